//! The gateway VM startup script, rendered from templates/.
