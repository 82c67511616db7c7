"""roadseg: find roads in satellite and aerial images, from raw scene to routable road network.

The package is shared by every service (ingest, labeler, trainer, gateway); each service
process is a thin entry point around the modules here.
"""

__version__ = "0.1.0"
