"""
yolos_d2's benchmarks and the scripts that draw the docs' figures. They stand beside the package,
are not installed, and run from the repository root: ``python -m benchmarks NAME`` (see
``benchmarks/__main__.py``). Each benchmark's ``run`` returns its rows as data; its ``main``
prints them as a table of ratios measured in one process.
"""
