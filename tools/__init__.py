"""Tools beside the service: ``import``, ``generate`` and ``bench`` of ``python -m service``.

They use the service (its settings, store and migrator); the service never imports them.
Their own dependencies (numpy, tqdm, the gateway database drivers) are the ``tools``
extra: ``pip install 'gatelog[tools]'``.
"""
