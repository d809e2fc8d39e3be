"""Moving a database: the export line format, checksums, and copying between backends.

Built on the contract's bulk paths (``export_records`` / ``import_records``,
``kern.db.transfer``), so every backend, kern's own or a third party's, can be exported,
imported and copied to any other. ``kern export`` / ``kern import`` / ``kern copy``
(``kern.cli.move``) are thin commands over these functions.
"""

from kern.transfer.checksum import Tally, tally_database
from kern.transfer.copy import CopyReport, copy_database
from kern.transfer.lines import FORMAT, FORMAT_VERSION, export_lines, import_lines

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CopyReport",
    "Tally",
    "copy_database",
    "export_lines",
    "import_lines",
    "tally_database",
]
