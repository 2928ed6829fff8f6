"""State (SQLAlchemy Core tables, migrations, named queries) and the object store."""
