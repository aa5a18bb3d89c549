"""SWS against its baselines across Des-Net depths: the pipeline behind tools/benchmark.py."""
from learngene.benchmark.config import BENCHMARK_METHODS, BenchmarkConfig, PartConfig, check_benchmark_config
from learngene.benchmark.runner import Benchmark
from learngene.benchmark.transfer import TransferBenchmark

__all__ = ["BENCHMARK_METHODS", "Benchmark", "BenchmarkConfig", "PartConfig", "TransferBenchmark",
           "check_benchmark_config"]
