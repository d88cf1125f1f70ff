//! The local emulator of the Compute Engine v1 and GKE v1 APIs.
