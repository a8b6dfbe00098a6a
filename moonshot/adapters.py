"""Adapters for the three ports, and the one place that picks them from the config.
Real adapters for macOS and Supabase are imported only when configured."""

from __future__ import annotations

from dataclasses import dataclass

from moonshot.config import Config
from moonshot.errors import ConfigError
from moonshot.ports import Launcher, PhotosLibrary, Source


@dataclass
class Ports:
    source: Source
    library: PhotosLibrary
    launcher: Launcher | None  # None: launch.mode = off (sync-only)


def build_source(cfg: Config) -> Source:
    if cfg.source.kind == "local":
        from moonshot.supabase.source_local import LocalSource

        return LocalSource()
    if cfg.source.kind == "supabase":
        from moonshot.supabase.source_supabase import SupabaseSource

        return SupabaseSource.from_config(cfg)
    raise ConfigError(f"source.kind = {cfg.source.kind!r}: expected local or supabase")


def build_library(cfg: Config) -> PhotosLibrary:
    kind = cfg.photos_kind
    if kind == "folder":
        from moonshot.photos.library_folder import FolderLibrary

        return FolderLibrary(cfg.library_path)
    if kind == "macos":
        from moonshot.photos.library_macos import MacPhotosLibrary

        return MacPhotosLibrary.from_config(cfg)
    raise ConfigError(f"photos.kind = {kind!r}: expected auto, folder or macos")


def build_launcher(cfg: Config, library: PhotosLibrary) -> Launcher | None:
    mode = cfg.launch.mode
    if mode == "off":
        return None
    if mode == "ledger":
        from moonshot.app.launcher_ledger import LedgerLauncher

        return LedgerLauncher(cfg.ledger_path)
    if mode == "app":
        from moonshot.app.launcher_gui import GuiLauncher

        return GuiLauncher.from_config(cfg, library)
    raise ConfigError(f"launch.mode = {mode!r}: expected off, ledger or app")


def build(cfg: Config) -> Ports:
    library = build_library(cfg)
    return Ports(build_source(cfg), library, build_launcher(cfg, library))
