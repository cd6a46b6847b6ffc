"""Wheels made by a cell, so that package tests need no registry."""

from __future__ import annotations

WHEEL_MAKER = '''\
import base64, hashlib, os, zipfile

def wheel(name, version, source, requires=(), scripts=None):
    """A wheel of one module package, written by hand into ./dist (what `uv build` makes)."""
    os.makedirs("dist", exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
        + "".join(f"Requires-Dist: {r}\\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n"
        "Tag: py3-none-any\\n",
    }
    if scripts:
        files[f"{info}/entry_points.txt"] = "[console_scripts]\\n" + "".join(
            f"{k} = {v}\\n" for k, v in scripts.items())
    path = f"dist/{name}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            data = text.encode()
            archive.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\\n".join(record) + "\\n")
    return path
'''
"""Cell code defining ``wheel(name, version, source, requires, scripts)``: it writes a wheel of
one package into the workspace's ``dist/`` and returns its path, as a user would upload one."""
