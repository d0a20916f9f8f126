"""Tools beside the service: ``generate`` and ``bench`` of ``python -m service``.

They use the service (its settings, store, migrator and bulk loader); the service never
imports them: its CLI finds their commands through the ``gatelog.commands`` entry points
(``pyproject.toml``). Their own dependencies (numpy, tqdm) are the ``tools`` extra:
``pip install 'gatelog[tools]'``. Importing a gateway's database is the service's own
(``service.importer``): ``serve`` follows a gateway with it.
"""
