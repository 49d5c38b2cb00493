//! `tenant-isolation`: TODO.
