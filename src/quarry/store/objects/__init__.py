"""The object store: content-addressed blobs and runtime artifacts."""

from quarry.store.objects.base import ObjectStore, blob_key, open_object_store

__all__ = ["ObjectStore", "blob_key", "open_object_store"]
