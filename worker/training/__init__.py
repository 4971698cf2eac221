"""The pure training pipeline: a TrainingSpec in, a TrainingResult out.

Nothing in this package imports the web, database or Celery layers (app/, sqlalchemy, fastapi,
celery), so it can be run from a script, a test or a benchmark exactly as the worker runs it.
"""
