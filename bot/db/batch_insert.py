"""New rows of the tables a round of updates writes many of, inserted with one Core INSERT per table.

A text tip adds a user, a tip, its entry and the acknowledgement; SQLAlchemy's unit of work spent
more CPU on the event loop bookkeeping those four objects (cascades, attribute history, dependency
sorting, per-row parameter collection) than the INSERTs themselves cost: building and flushing a
round of five tips took 5-6 ms, writing the same rows with Core 2 ms, and this way (the objects
still built) 3.5 ms (bench/RESULTS.md, "Session 6"). Just before each flush, this takes the new
objects of those classes out of the unit of work, inserts them table by table (parents first, ids
read back with RETURNING in parameter order), and registers them as persistent exactly as a flush
would: they can be changed, refreshed or deleted afterwards, and a rollback removes them from the
session as it removes any object it inserted. Handlers keep building ordinary model objects and
know nothing of this.

An object whose parent (a many-to-one relationship) is new but not of these classes is left to the
unit of work, and so is everything that refers to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, event, insert, inspect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.sql import Insert

from bot.db.session_state import ReuniteSyncSession
from bot.db.sqlalchemy_internals import register_persistent


@dataclass(frozen=True)
class _Plan:
    mapper: Mapper
    columns: tuple[tuple[str, str, object], ...]  # (attribute, column name, default)
    parents: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (relationship, ((fk attr, parent attr)...))
    id_attribute: str | None  # a generated primary key to read back, or None for a natural key
    statement: Insert


def _table_of(mapper: Mapper) -> Table:
    """The table a mapped class inserts into (every model here maps one plain Table)."""
    table = mapper.local_table
    if not isinstance(table, Table):
        raise TypeError(f"{mapper.class_.__name__} is not mapped to a plain table")
    return table


def _plan(cls: type) -> _Plan:
    mapper: Mapper = inspect(cls)
    table = _table_of(mapper)
    columns = []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if column.table is not table or column._insert_sentinel:
            continue  # Core fills the sentinel itself
        default = column.default
        if column.server_default is not None or (default is not None and not default.is_scalar):
            raise TypeError(f"{cls.__name__}.{prop.key}: only scalar Python defaults can be filled in here")
        columns.append((prop.key, column.key, default.arg if default is not None else None))
    parents = []
    for relationship in mapper.relationships:
        if relationship.direction.name == "MANYTOONE":
            parent_mapper = relationship.mapper
            parents.append((relationship.key, tuple(
                (mapper.get_property_by_column(local).key, parent_mapper.get_property_by_column(remote).key)
                for local, remote in relationship.local_remote_pairs)))
    (key_column,) = mapper.primary_key
    generated = key_column.autoincrement is not False
    statement = insert(table)
    if generated:
        statement = statement.returning(key_column, sort_by_parameter_order=True)
    return _Plan(mapper, tuple(columns), tuple(parents),
                 mapper.get_property_by_column(key_column).key if generated else None, statement)


def install(classes: tuple[type, ...]) -> None:
    """Insert new objects of ``classes`` this way in every session (in the order of the tables'
    foreign keys, whatever the order given)."""
    tables = {_table_of(inspect(cls)): cls for cls in classes}
    sorted_tables = _table_of(inspect(classes[0])).metadata.sorted_tables
    plans = [_plan(tables[table]) for table in sorted_tables if table in tables]
    handled = {plan.mapper.class_: plan for plan in plans}

    @event.listens_for(ReuniteSyncSession, "before_flush")
    def insert_in_batches(session: Session, _flush_context, _instances) -> None:
        new_by_class: dict[type, list] = {}
        for obj in session.new:
            if type(obj) in handled:
                new_by_class.setdefault(type(obj), []).append(obj)
        if not new_by_class:
            return
        connection = session.connection()
        for plan in plans:
            objects = [obj for obj in new_by_class.get(plan.mapper.class_, ())
                       if (plan.id_attribute is None or obj.__dict__.get(plan.id_attribute) is None)
                       and _link_parents(plan, obj)]
            if objects:
                _insert(session, connection, plan, objects)


def _link_parents(plan: _Plan, obj) -> bool:
    """Copy the keys of the object's parents into its foreign keys; False if a parent has none yet."""
    values = obj.__dict__
    for relationship, pairs in plan.parents:
        parent = values.get(relationship)
        if parent is None:
            continue
        for fk_attribute, parent_attribute in pairs:
            key = parent.__dict__.get(parent_attribute)
            if key is None:
                return False
            if values.get(fk_attribute) != key:
                setattr(obj, fk_attribute, key)
    return True


def _insert(session: Session, connection, plan: _Plan, objects: list) -> None:
    rows = []
    for obj in objects:
        values = obj.__dict__
        row = {}
        for attribute, column, default in plan.columns:
            if attribute == plan.id_attribute:
                continue
            if attribute not in values:
                # set on the object too: an attribute left unset would be loaded lazily, which an
                # async session cannot do
                setattr(obj, attribute, default)
            row[column] = values[attribute]
        rows.append(row)
    if plan.id_attribute is None:
        connection.execute(plan.statement, rows)
    else:
        for obj, new_id in zip(objects, connection.execute(plan.statement, rows).scalars(), strict=True):
            setattr(obj, plan.id_attribute, new_id)
    register_persistent(session, objects)
