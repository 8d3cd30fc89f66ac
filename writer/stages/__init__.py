"""The worker's batch path as small stages, each with its collaborators passed in (composed in ``writer.worker``).

poll (``poll``) -> parse (``parse``, pure) -> write (``write``, in ``write_thread``) -> dead-letter
(``dead_letter``) -> count (``count``) -> commit (``commit``) -> track (``track``); ``stop`` bounds them all,
``broker_events`` reads the consumer's own callbacks. Partition bookkeeping is ``writer.partitions``.
"""
