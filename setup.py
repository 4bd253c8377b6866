from setuptools import find_packages, setup

setup(
    name="recsys-spark",
    version="0.1.0",
    description="Distributed Spark batch recommender writing a weekly Discover Weekly to Delta tables",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["recsys_spark", "recsys_spark.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "pyspark>=4.2.0,<4.3",
        # delta-spark 4.4.1's jars are not on Maven Central (only 4.4.0 is); configure_spark_with_delta_pip
        # asks Ivy for the jar of the installed Python version, so pin the one that resolves.
        "delta-spark==4.4.0",
        "numpy>=1.24,<2.3",
        "pandas>=2.0,<3",
        "pyarrow>=18,<20",  # pyspark 4.2 needs >=18; laion-clap pins numpy<2 and pyarrow>=20 needs numpy 2
        "pyyaml>=6.0",
        "scipy>=1.10",
        "torch>=2.2,<3",
        "torchvision>=0.17",
        "laion-clap>=1.1.6,<1.2",
        "faiss-cpu>=1.8,<2",
        "soundfile>=0.12",
        "matplotlib>=3.7",
    ],
    extras_require={
        "dev": ["pytest>=8", "chispa>=0.10", "deltalake>=0.20", "nbformat>=5"],
        "bench": ["implicit>=0.7,<0.8", "psutil>=5"],
    },
    entry_points={"console_scripts": ["recsys-weekly=recsys_spark.cli:weekly_main"]},
)
