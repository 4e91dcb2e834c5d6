"""Operating the parts: the broker, Airflow, services, processes, spark-submit, the loop."""
