//! Unit tests of the Queclink session, framing and decoders.
