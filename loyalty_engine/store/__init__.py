"""Storage: SQLAlchemy tables, database connections, migrations."""
