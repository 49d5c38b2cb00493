//! `durability`: TODO.
