#!/usr/bin/env bash
# Audit and archive benchmark (issue 16), on a loopback docker-registry started here:
#   1. `repro audit` over N runs (default 10,000) using D distinct digests (default 500), every
#      digest tagged in one repository (so the tag listing and per-tag lookups are included);
#   2. archiving throughput: `repro image archive ID --to DIR` of an image of LAYERS random
#      layers of LAYER_MB MiB each (default 3 x 64 MiB), against
#      `skopeo copy docker://…@DIGEST oci:DIR:x` of the same image, both into an empty directory.
# Usage: benches/audit.sh   (N=… D=… LAYERS=… LAYER_MB=… RUNS=… BENCH_DIR=… REPRO=… to change)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-10000}"
D="${D:-500}"
LAYERS="${LAYERS:-3}"
LAYER_MB="${LAYER_MB:-64}"
dir="${BENCH_DIR:-$PWD/target/bench-audit}"
rm -rf "$dir"
mkdir -p "$dir"
if [[ -z ${REPRO:-} ]]; then
    cargo build --release -q --bin repro
    REPRO="$PWD/target/release/repro"
fi
for t in docker-registry skopeo hyperfine python3; do
    command -v "$t" > /dev/null || { echo "benches/audit.sh needs $t" >&2; exit 1; }
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$dir/registry.yml" > "$dir/registry.log" 2>&1 &
registry_pid=$!
trap 'kill "$registry_pid" 2> /dev/null || true' EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/v2/" > /dev/null && break
    sleep 0.1
done
reg="127.0.0.1:$port"
echo "registry: $reg" >&2

# Push D small images (shared layer, distinct configs) tagged v0…v(D-1), and one large image.
python3 - "$reg" "$D" "$LAYERS" "$LAYER_MB" "$dir" <<'PY'
import hashlib, io, json, os, sys, tarfile, urllib.request
reg, d, layers, layer_mb, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
base = f"http://{reg}/v2"

def req(method, url, body=None, ctype=None):
    r = urllib.request.Request(url, data=body, method=method)
    if ctype:
        r.add_header("Content-Type", ctype)
    return urllib.request.urlopen(r)

def blob(repo, data):
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        req("HEAD", f"{base}/{repo}/blobs/{dg}")
        return dg
    except urllib.error.HTTPError:
        pass
    loc = req("POST", f"{base}/{repo}/blobs/uploads/", b"").headers["Location"]
    if loc.startswith("/"):
        loc = f"http://{reg}{loc}"
    sep = "&" if "?" in loc else "?"
    req("PUT", f"{loc}{sep}digest={dg}", data, "application/octet-stream")
    return dg

def tar_of(name, payload):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    return b.getvalue()

def image(repo, tag, layer_blobs, label):
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob(repo, l), "size": len(l)} for l in layer_blobs]
    config = json.dumps({"architecture": "amd64", "os": "linux",
        "config": {"Labels": {"bench": label}},
        "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in descs]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(repo, config), "size": len(config)},
        "layers": descs}).encode()
    req("PUT", f"{base}/{repo}/manifests/{tag}", manifest, "application/vnd.oci.image.manifest.v1+json")
    return "sha256:" + hashlib.sha256(manifest).hexdigest()

small = tar_of("hello", b"hello\n")
with open(os.path.join(out, "digests.txt"), "w") as f:
    for i in range(d):
        f.write(f"v{i} {image('bench/small', f'v{i}', [small], str(i))}\n")
big = [tar_of(f"l{i}", os.urandom(layer_mb << 20)) for i in range(layers)]
with open(os.path.join(out, "big.txt"), "w") as f:
    f.write(image("bench/big", "v1", big, "big") + "\n")
PY

# One recorded run as a template, then N runs over the D digests, imported in one go.
export REPRO_DB="$dir/repro.db"
(cd "$dir" && "$REPRO" -q run --host --image "$reg/bench/small:v0" -- true)
"$REPRO" export > "$dir/template.jsonl"
python3 - "$dir" "$N" "$reg" <<'PY'
import json, os, sys
out, n, reg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tpl = json.loads(open(os.path.join(out, "template.jsonl")).readline())
digests = [l.split() for l in open(os.path.join(out, "digests.txt"))]
big = open(os.path.join(out, "big.txt")).read().strip()
alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
def ulid(i):
    s = ""
    for _ in range(16):
        s = alphabet[i % 32] + s
        i //= 32
    return "01jd3k0000" + s
with open(os.path.join(out, "runs.jsonl"), "w") as f:
    for i in range(n + 1):
        r = dict(tpl)
        r["id"] = ulid(i + 1)
        img = dict(tpl["image"])
        if i == n:
            img["reference"], img["digest"] = f"{reg}/bench/big:v1", big
        else:
            tag, dg = digests[i % len(digests)]
            img["reference"], img["digest"] = f"{reg}/bench/small:{tag}", dg
        r["image"] = img
        f.write(json.dumps(r) + "\n")
print(ulid(n + 1))
PY
"$REPRO" -q import "$dir/runs.jsonl"
big_id=$(tail -1 "$dir/runs.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
big_digest=$(cat "$dir/big.txt")
echo "runs: $("$REPRO" ls --all --format csv --columns id | tail -n +2 | wc -l), distinct digests: $((D + 1))" >&2

# 1. audit (exit 0: every digest present)
"$REPRO" audit --json > "$dir/audit.json"
hyperfine -N --warmup 1 --runs "${RUNS:-5}" --export-markdown "$dir/audit.md" \
    -n "repro audit ($N runs, $((D + 1)) digests)" "$REPRO audit --json"

# 2. archive throughput vs skopeo copy, each into an empty directory
hyperfine --warmup 1 --runs "${RUNS:-5}" --export-markdown "$dir/archive.md" \
    --prepare "rm -rf '$dir/arch' '$dir/skopeo'" \
    -n "repro image archive ($LAYERS x $LAYER_MB MiB)" "'$REPRO' -q image archive $big_id --to '$dir/arch'" \
    -n "skopeo copy docker:// oci:" "skopeo --insecure-policy copy -q --src-tls-verify=false docker://$reg/bench/big@$big_digest oci:'$dir/skopeo':x"
# A second archive of the same image into the same directory fetches nothing.
hyperfine -N --warmup 1 --runs "${RUNS:-5}" --export-markdown "$dir/archive-again.md" \
    -n "repro image archive (already archived)" "$REPRO -q image archive $big_id --to $dir/arch"
echo "MiB archived per run: $((LAYERS * LAYER_MB))" >&2
cat "$dir/audit.md" "$dir/archive.md" "$dir/archive-again.md"
