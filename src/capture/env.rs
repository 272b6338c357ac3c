//! Environment variables a run records: which names look like secrets, and what is recorded
//! in their place.

/// The value recorded for a secret-looking variable (the real value still reaches the child).
pub const REDACTED: &str = "<redacted>";

/// Whether a variable name looks like it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| up.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_in_any_case() {
        for n in [
            "HF_TOKEN",
            "aws_secret_access_key",
            "DB_PASSWORD",
            "API_KEY",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["SEED", "CUDA_VISIBLE_DEVICES", "PATH"] {
            assert!(!looks_secret(n), "{n}");
        }
    }
}
