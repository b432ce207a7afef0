"""Where features live: the HDF5 feature store and its lock, feature extraction (decode, parts
journal, sharding) and the readers that import the peers' released feature files."""
