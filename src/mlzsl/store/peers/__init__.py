"""The peers' released feature files (BiAM HDF5, LESA TFRecord) imported into a feature store."""

from mlzsl.store.peers.importer import import_biam, import_lesa

__all__ = ["import_biam", "import_lesa"]
