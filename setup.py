"""Ships the repository's ``plans/`` and ``trainers/`` folders inside the package of a wheel.

They live beside the package in the repository (``nnUNet_extTrainer`` and the README point at
``trainers/``); a wheel (``pip install .``, ``python -m build``) copies them to
``nnunetv2_glrp/_shipped/``, where ``nnunetv2_glrp.environment.shipped_folder`` finds them. The rest
of the configuration is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = {"plans": "*.json", "trainers": "*.py"}


class BuildPyWithShippedFolders(build_py):
    def run(self):
        super().run()
        root = Path(__file__).resolve().parent
        for folder, pattern in SHIPPED.items():
            target = Path(self.build_lib) / "nnunetv2_glrp" / "_shipped" / folder
            self.mkpath(str(target))
            for source in sorted((root / folder).glob(pattern)):
                self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildPyWithShippedFolders})
