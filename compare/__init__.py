"""Compare: settlement loaders, the diff engine, divergence kinds, reconciliation."""
