"""roadnet: road mask -> road graph -> shortest routes -> APLS (a library; the gateway and the CLI use it).

``skeleton`` and ``graph`` trace a mask's skeleton into a networkx graph with metre lengths (in windows for
large masks), ``clean`` and ``params`` prune spurs and join gaps, ``route`` snaps points and finds shortest
routes, ``apls`` and ``topo`` score a graph against a reference, ``io`` reads and writes GeoJSON, GeoPackage
and gpickle (docs/contracts.md §7), ``synthetic`` draws test networks. ``cli`` is ``roadseg graph``,
``roadseg route`` and ``roadseg apls``. Documentation: docs/road-network.md.
"""
