//! Code provenance from git: commit, branch, remote (credentials stripped), dirty state and patch.
