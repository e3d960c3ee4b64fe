"""Live video: cameras in over WHIP, one program per room composed and encoded once, out over WHEP."""
