"""What cells import from cellbus: ``from cellbus import parallel`` (Dask workers for the
session's small calculations, on every kernel worker of the deployment)."""
