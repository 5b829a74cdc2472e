"""One module per command (or pair of related commands): `add_parser` declares its options,
`run` does the work and returns the exit code."""
