"""Spark jobs of the learning pipeline, each runnable by ``spark-submit spark_jobs/<job>.py`` on any master.

The jobs use only Spark SQL expressions and MLlib (JVM code): no Python UDFs run on executors,
so a cluster's executors need no copy of this project; Python work (evaluation, top-k) runs on
the driver.
"""
