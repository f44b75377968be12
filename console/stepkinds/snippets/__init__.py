"""Helper code that generated steps carry, kept as real (linted, importable) modules.

``console.stepkinds.codegen`` copies the text below each file's ``snippet`` marker line into
the code it generates, so a converted step works without this package; the imports above the
marker are there so that each file stands on its own.
"""
