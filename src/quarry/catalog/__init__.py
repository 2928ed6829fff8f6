"""Reading compiled revisions: everything the serve fleet needs, from rows and blobs."""
