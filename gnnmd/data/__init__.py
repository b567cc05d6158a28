"""Reference data: one HDF5 dataset format, importers, and (later) all-atom data generation."""
