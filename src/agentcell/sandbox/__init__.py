"""Where cells run. Above this layer, cells are reached through ``service.CellService`` (in this
process: ``local.LocalCells``); below it, ``manager.CellManager`` keeps them on a ``base.Backend``
(``docker/`` today)."""
