-- Spaces: named workspaces of files. A space's files are rows here (listed by path,
-- keyset-paged by the unique (space_id, path) index; COLLATE "C": byte order, so a
-- folder's paths are one range); their bytes are in the file storage under
-- <accountId>/spaces/<spaceId>/<blob>, a fresh blob per write (resources/space.py).
CREATE TABLE spaces (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias        text,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    contact_id   text COLLATE "C",
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX spaces_account ON spaces (account_id, id);
CREATE INDEX spaces_meta ON spaces USING gin (meta jsonb_path_ops);
CREATE INDEX spaces_contact ON spaces (contact_id, id);
CREATE INDEX spaces_blueprint ON spaces (blueprint_id, id) WHERE blueprint_id IS NOT NULL;

CREATE TABLE space_files (
    id          text COLLATE "C" PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    space_id    text COLLATE "C" NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    path        text COLLATE "C" NOT NULL,
    blob        text COLLATE "C" NOT NULL,
    type        text NOT NULL,
    size        bigint NOT NULL,
    checksum    text NOT NULL,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    UNIQUE (space_id, path)
);
