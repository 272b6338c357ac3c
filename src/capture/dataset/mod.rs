//! Dataset versions: content digests of local paths, DVC hashes, labels and URIs.
