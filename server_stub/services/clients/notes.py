"""Notes and tickets on a client (Support's "notes"), optionally about one of its licenses."""

from __future__ import annotations

from typing import Final

from sqlalchemy import select

from ...db import transaction
from ...portal_models import ClientNote, License
from ..audit import record
from ..context import ServiceContext
from .fields import has_control_characters
from .paging import Page, keyset_page
from .records import client_object, get_client, raise_problems

NOTE_MAX: Final = 10_000


def _body_ok(body: str) -> bool:
    # Line breaks and tabs are text in a note; other control characters are not.
    return (
        bool(body.strip())
        and len(body) <= NOTE_MAX
        and not has_control_characters(body.replace("\n", "").replace("\t", "").replace("\r", ""))
    )


class NoteBook:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def add(self, actor: str, client_id: str, body: str, license_id: str | None) -> ClientNote:
        body = body.strip()
        if not _body_ok(body):
            raise_problems([("body", f"1 to {NOTE_MAX} characters of text")])
        now = self._ctx.clock.now()
        with transaction(self._ctx.write) as session:
            client = get_client(session, client_id)
            if (
                license_id is not None
                and session.scalar(
                    select(License.id).where(
                        License.id == license_id, License.client_id == client.id
                    )
                )
                is None
            ):
                raise_problems([("license_id", "no license of this client has this id")])
            note = ClientNote(
                client_id=client.id,
                license_id=license_id,
                author=actor,
                body=body,
                created_at=now,
            )
            session.add(note)
            session.flush()
            # The note's text is the client's business, not the log's: its id and length only.
            record(
                session,
                now,
                actor,
                "client.note",
                client_object(client.id),
                {"note_id": note.id, "license_id": license_id, "length": len(body)},
            )
            return note

    def list(
        self, client_id: str, *, license_id: str | None, cursor: str | None, limit: int
    ) -> Page[ClientNote]:
        query = select(ClientNote).where(ClientNote.client_id == client_id)
        if license_id is not None:
            query = query.where(ClientNote.license_id == license_id)
        with transaction(self._ctx.read) as session:
            get_client(session, client_id)
            return keyset_page(
                query,
                ClientNote.created_at,
                ClientNote.id,
                cursor=cursor,
                limit=limit,
                filters={"client_id": client_id, "license_id": license_id},
                fetch=lambda q: list(session.scalars(q)),
                key_of=lambda n: n.created_at,
                id_of=lambda n: n.id,
            )
