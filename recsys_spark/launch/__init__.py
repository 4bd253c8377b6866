"""Holds only the spark-submit launcher (a folder of its own: spark-submit puts the launcher's folder
first on ``sys.path``, where no module of the package may shadow a library)."""
