"""python3 -m diffcl: the library file the package loaded, and its version."""
from ._ffi import library_path, version_string

print("%s %s" % (library_path, version_string()))
