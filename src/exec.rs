//! Spawning the child (on the host or in the pinned container), forwarding signals, exit status.
