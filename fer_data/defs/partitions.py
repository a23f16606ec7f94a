from dagster import StaticPartitionsDefinition

from fer_data.datasets import DATASETS

# One partition per raw/ dataset folder, so datasets run in parallel and re-run independently.
dataset_partitions = StaticPartitionsDefinition(list(DATASETS))
