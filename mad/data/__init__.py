"""PD data: synthetic generator, PRPD rendering, AI Hub reader, training HDF5 and recordings."""
