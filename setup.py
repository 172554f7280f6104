import os

from setuptools import find_packages, setup

with open(os.path.join("sb3_loop", "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

with open("README.md", encoding="utf-8") as file_handler:
    long_description = file_handler.read()

setup(
    name="sb3_loop",
    packages=[package for package in find_packages() if package.startswith("sb3_loop")],
    package_data={"sb3_loop": ["py.typed", "version.txt", "hyperparams/*.yml"]},
    install_requires=[
        "stable_baselines3>=2.3.0,<3.0",
        "gymnasium>=1.0.0",
        "torch>=2.3",
        "numpy>=1.24",
    ],
    extras_require={
        "mujoco": ["gymnasium[mujoco]>=1.0.0"],
        "zoo": ["rl_zoo3[plots]>=2.3.0", "requests", "optuna>=3.0", "pandas<3"],
        "offline": ["h5py>=3.8", "minari>=0.5"],
        # benchmarks/offline_priors.py only: d3rlpy 2.8.0 pulls the old `gym` 0.26.2; never a runtime dependency
        "benchmark-offline": ["d3rlpy==2.8.0"],
        "tests": [
            "pytest>=7.0",
            "pytest-xdist",
            "hypothesis>=6.0",
            "gymnasium[mujoco]>=1.0.0",
            "tqdm",
            "rich",
            "tensorboard",
        ],
    },
    description="LOOP (Learning Off-Policy with Online Planning) for Stable-Baselines3",
    long_description=long_description,
    long_description_content_type="text/markdown",
    author="sb3-loop developers",
    license="MIT",
    version=__version__,
    python_requires=">=3.10",
    keywords="reinforcement-learning model-based-rl planning stable-baselines3 gymnasium pytorch",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
