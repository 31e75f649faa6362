//! tco-emulator
