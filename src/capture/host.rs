//! Host facts: host name, user, OS/arch, boot id, and whether a recorded wrapper is still alive.
