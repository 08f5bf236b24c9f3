#!/usr/bin/env python3
"""Writes the filter as an OCI image layout (oci-layout, index.json, blobs/sha256/...).

Two tags, both pulled by Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy:
  TAG         the Wasm OCI artifact ("oci" variant of the Wasm image spec): the raw module as
              a layer of type application/vnd.module.wasm.content.layer.v1+wasm, beside the
              runtime config as a layer of type application/vnd.module.wasm.config.v1+json
              (both pullers take this variant only with exactly these two layers);
  TAG-compat  the "compat" variant, a plain OCI image whose single tar+gzip layer holds
              plugin.wasm, for registries and tools that refuse custom media types.
Nothing depends on the clock or the machine: the same module gives the same digests.

usage: oci_image.py WASM OUT_DIR TAG
"""

import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
# A registry tag (OCI distribution spec); TAG-compat must be one too.
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,120}")

# What the Wasm image spec's runtime config says of an Envoy filter: the root id the
# bootstraps and WasmPlugins in this repository use, and the Proxy-Wasm ABI the SDK exports.
RUNTIME_CONFIG = {
    "type": "envoy_proxy",
    "abiVersions": ["proxy_abi_version_0_2_1"],
    "config": {"root_ids": ["wasm-iap"]},
}


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """The blobs of one layout directory, each stored once under its sha256."""

    def __init__(self, root):
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)

    def add(self, media_type, data, annotations=None):
        digest = hashlib.sha256(data).hexdigest()
        (self.blobs / digest).write_bytes(data)
        descriptor = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor


def plugin_tar(wasm):
    """A tar holding only plugin.wasm, with fixed owner, mode and time."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        entry = tarfile.TarInfo("plugin.wasm")
        entry.size, entry.mode, entry.mtime = len(wasm), 0o444, 0
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = ""
        archive.addfile(entry, io.BytesIO(wasm))
    return buffer.getvalue()


def artifact_manifest(layout, wasm):
    runtime = canonical_json(RUNTIME_CONFIG)
    config = layout.add(WASM_CONFIG, runtime)
    layers = [
        layout.add(WASM_CONFIG, runtime, {TITLE: "runtime-config.json"}),
        layout.add(WASM_LAYER, wasm, {TITLE: "plugin.wasm"}),
    ]
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}, layers[1]


def compat_manifest(layout, wasm):
    tar = plugin_tar(wasm)
    layer = layout.add(OCI_LAYER_GZIP, gzip.compress(tar, compresslevel=9, mtime=0))
    image_config = {
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
    }
    config = layout.add(OCI_CONFIG, canonical_json(image_config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [layer],
        "annotations": {"module.wasm.image/variant": "compat"},
    }
    return manifest, layer


def main(wasm_path, out_dir, tag):
    wasm = Path(wasm_path).read_bytes()
    if not wasm.startswith(b"\0asm"):
        sys.exit(f"{wasm_path} is not a Wasm module")
    if not TAG_PATTERN.fullmatch(tag):
        sys.exit(f"{tag!r} is not a registry tag ([A-Za-z0-9_][A-Za-z0-9._-]*, at most 121 characters)")
    root = Path(out_dir)
    # Stale blobs go with the old layout; anything else in the way is not ours to remove.
    if root.exists():
        if not (root / "oci-layout").is_file() and any(root.iterdir()):
            sys.exit(f"{out_dir} exists and is not an OCI image layout: not removing it")
        shutil.rmtree(root)
    layout = Layout(root)
    entries = []
    for name, build in ((tag, artifact_manifest), (f"{tag}-compat", compat_manifest)):
        manifest, layer = build(layout, wasm)
        descriptor = layout.add(OCI_MANIFEST, canonical_json(manifest), {REF_NAME: name})
        entries.append(descriptor)
        print(f"{name} manifest {descriptor['digest']} layer {layer['digest']}")
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (root / "index.json").write_bytes(canonical_json(index))
    print(f"module sha256:{hashlib.sha256(wasm).hexdigest()} ({len(wasm)} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
