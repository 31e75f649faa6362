//! sf-emulator
