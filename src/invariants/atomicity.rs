//! `atomicity`: TODO.
