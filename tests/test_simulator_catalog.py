"""The simulated site's catalog: deterministic, faithful to DESIGN.md's records, cached on disk."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from movierec import settings as settings_module
from movierec.movielog import is_movie_id
from simulator import catalog
from simulator.catalog import GENRES, OCCUPATIONS, World, generate_users, load_world, slugify, world_dir

USERS, MOVIES = 2000, 300

# DESIGN.md, "Catalog API": the fields of GET /movie/<id>, in order, with their JSON types.
MOVIE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "tmdb_id": int,
    "imdb_id": str,
    "title": str,
    "original_title": str,
    "adult": bool,
    "belongs_to_collection": (dict, type(None)),
    "budget": int,
    "genres": list,
    "homepage": str,
    "original_language": str,
    "overview": str,
    "popularity": float,
    "poster_path": str,
    "production_companies": list,
    "production_countries": list,
    "release_date": str,
    "revenue": int,
    "runtime": int,
    "spoken_languages": list,
    "status": str,
    "vote_average": float,
    "vote_count": int,
}
# As DESIGN.md lists them, copied character for character.
DESIGN_OCCUPATIONS = [
    "other or not specified",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
]


def small_settings(home: Path, seed: int = 17645, users: int = USERS, movies: int = MOVIES):
    return settings_module.load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_SCALE_USERS": str(users),
            "MOVIEREC_SCALE_MOVIES": str(movies),
            "MOVIEREC_SEED": str(seed),
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return load_world(small_settings(tmp_path_factory.mktemp("world")))


@pytest.fixture(scope="module")
def records(world: World) -> list[dict]:
    return world.movies.to_pylist()


def same_world(a: World, b: World) -> bool:
    return (
        a.movies.equals(b.movies)
        and np.array_equal(a.user_age, b.user_age)
        and np.array_equal(a.user_occupation, b.user_occupation)
        and np.array_equal(a.user_gender, b.user_gender)
    )


def test_the_same_seed_builds_the_same_world(tmp_path: Path, world: World) -> None:
    again = load_world(small_settings(tmp_path))  # another home: built from scratch
    assert same_world(world, again)


def test_a_different_seed_builds_a_different_world(tmp_path: Path, world: World) -> None:
    other = load_world(small_settings(tmp_path, seed=1))
    assert not other.movies.column("id").equals(world.movies.column("id"))
    assert not np.array_equal(other.user_age, world.user_age)


def test_movies_do_not_depend_on_the_number_of_users(tmp_path: Path, world: World) -> None:
    other = load_world(small_settings(tmp_path, users=50))
    assert other.movies.equals(world.movies)
    assert other.n_users == 50


def test_slugs_are_unique_movielog_ids_made_of_title_and_year(records: list[dict]) -> None:
    slugs = [r["id"] for r in records]
    assert len(slugs) == MOVIES == len(set(slugs))
    for record in records:
        assert is_movie_id(record["id"]), record["id"]
        assert re.fullmatch(r"[a-z0-9]+(\+[a-z0-9]+)*\+\d{4}", record["id"])
        assert record["id"] == slugify(record["title"], int(record["release_date"][:4]))


def test_slugify_lowercases_and_joins_words_with_plus() -> None:
    assert slugify("The Matrix", 1999) == "the+matrix+1999"
    assert slugify("Silent River 2", 2003) == "silent+river+2+2003"


def test_a_slug_collision_gets_a_disambiguator_word() -> None:
    rng = np.random.default_rng(0)
    titles, slugs = catalog._unique_slugs(rng, ["Up", "Up", "Up", "Up"], np.array([2009, 2009, 2009, 1990]))
    assert len(set(slugs)) == 4 and slugs[0] == "up+2009" and slugs[3] == "up+1990"
    for title, slug in zip(titles[1:3], slugs[1:3], strict=True):
        assert title.startswith("Up ") and title.split()[-1] in catalog.DISAMBIGUATORS
        assert slug == slugify(title, 2009)


def test_every_design_field_is_present_with_its_type(records: list[dict]) -> None:
    for record in records:
        assert list(record) == list(MOVIE_FIELDS)
        for name, kind in MOVIE_FIELDS.items():
            assert isinstance(record[name], kind), (name, record[name])
        assert not isinstance(record["tmdb_id"], bool)
        assert re.fullmatch(r"tt\d{7}", record["imdb_id"])
        assert re.fullmatch(r"[a-z]{2}", record["original_language"])
        assert re.fullmatch(r"/[A-Za-z0-9]{27}\.jpg", record["poster_path"])
        assert record["homepage"] == "" or record["homepage"].startswith("https://")
        assert record["status"] == "Released" and record["original_title"] == record["title"]
        assert date.fromisoformat(record["release_date"]) < catalog.CATALOG_DATE
        assert 40 <= record["runtime"] <= 240
        assert record["budget"] >= 0 and record["revenue"] >= 0 and record["vote_count"] >= 0
        assert 0 <= record["vote_average"] <= 10 and record["popularity"] > 0
        assert (record["vote_average"] == 0) == (record["vote_count"] == 0)
        assert record["overview"]
        for company in record["production_companies"]:
            assert set(company) == {"id", "name"} and isinstance(company["id"], int)
        assert len(record["production_countries"]) >= 1
        for country in record["production_countries"]:
            assert set(country) == {"iso_3166_1", "name"} and re.fullmatch(r"[A-Z]{2}", country["iso_3166_1"])
        assert record["spoken_languages"][0]["iso_639_1"] == record["original_language"]
        if record["belongs_to_collection"] is not None:
            assert set(record["belongs_to_collection"]) == {"id", "name", "poster_path", "backdrop_path"}


def test_ids_are_unique(records: list[dict]) -> None:
    assert len({r["tmdb_id"] for r in records}) == len(records)
    assert len({r["imdb_id"] for r in records}) == len(records)


def test_genres_come_from_the_tmdb_list(records: list[dict], world: World) -> None:
    tmdb = dict(GENRES)
    assert tmdb[28] == "Action" and tmdb[10770] == "TV Movie" and len(tmdb) == 19
    for record in records:
        ids = [g["id"] for g in record["genres"]]
        assert 1 <= len(ids) <= 3 and len(set(ids)) == len(ids)
        assert all(tmdb[g["id"]] == g["name"] for g in record["genres"])
    # the numpy view agrees with the records
    for i in (0, 7, MOVIES - 1):
        assert {GENRES[j][0] for j in np.flatnonzero(world.movie_genres[i])} == {
            g["id"] for g in records[i]["genres"]
        }


def test_films_of_a_collection_are_numbered_sequels_with_the_same_genres(records: list[dict]) -> None:
    by_collection: dict[int, list[dict]] = {}
    for record in records:
        if record["belongs_to_collection"]:
            by_collection.setdefault(record["belongs_to_collection"]["id"], []).append(record)
    assert by_collection, "a catalog of 300 films has some franchises"
    for films in by_collection.values():
        films.sort(key=lambda r: r["release_date"])
        assert len(films) >= 2
        first = films[0]["title"]
        assert films[0]["belongs_to_collection"]["name"] == f"{first} Collection"
        assert films[1]["title"].startswith(f"{first} 2")
        assert all(f["genres"] == films[0]["genres"] for f in films)


def test_release_years_are_skewed_recent(world: World) -> None:
    years = world.release_year
    assert years.min() >= 1915 and years.max() <= catalog.CATALOG_DATE.year
    assert np.median(years) > 1995
    assert (years >= 2016).sum() > 3 * ((years >= 1960) & (years < 1970)).sum()


def test_popularity_is_heavy_tailed(world: World) -> None:
    popularity = np.sort(world.popularity)[::-1]
    top_share = popularity[: len(popularity) // 100].sum() / popularity.sum()
    assert top_share > 0.05  # the top 1% of movies hold far more than 1% of the attention
    assert popularity[0] > 20 * np.median(popularity)


def test_users_have_plausible_demographics(world: World) -> None:
    assert world.n_users == USERS
    assert world.user_age.min() >= 13 and world.user_age.max() <= 90
    assert 25 <= np.median(world.user_age) <= 40
    female = (world.user_gender == catalog.GENDERS.index("F")).mean()
    assert abs(female - 0.17) < 0.04
    assert set(world.user_occupation.tolist()) <= set(range(21))
    record = world.user_record(1)
    assert record is not None and set(record) == {"user_id", "age", "occupation", "gender"}
    assert record["occupation"] in DESIGN_OCCUPATIONS and record["gender"] in ("M", "F")
    assert world.user_record(0) is None and world.user_record(USERS + 1) is None


def test_the_occupations_are_exactly_the_21_of_design() -> None:
    assert list(OCCUPATIONS) == DESIGN_OCCUPATIONS


def test_occupations_depend_on_age_and_all_appear() -> None:
    age, occupation, gender = generate_users(3, 20_000)
    assert set(occupation.tolist()) == set(range(21))
    k12, retired = OCCUPATIONS.index("K-12 student"), OCCUPATIONS.index("retired")
    assert age[occupation == k12].max() <= 24
    assert np.median(age[occupation == retired]) >= 56
    assert abs(gender.mean() - 0.17) < 0.015


def test_the_second_load_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = small_settings(tmp_path)
    first = load_world(settings)
    folder = world_dir(settings)
    assert folder == tmp_path / "world" / f"17645-{USERS}x{MOVIES}"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
    assert set(stamps) == {"movies.parquet", "users.parquet"}

    def no_generation(*args: object) -> None:
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(catalog, "generate_movies", no_generation)
    monkeypatch.setattr(catalog, "generate_users", no_generation)
    second = load_world(settings)
    assert same_world(first, second)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")} == stamps


def test_a_cache_from_another_generator_version_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = small_settings(tmp_path, users=30, movies=40)
    load_world(settings)
    monkeypatch.setattr(catalog, "WORLD_VERSION", catalog.WORLD_VERSION + 1)
    calls = []
    real = catalog.generate_movies
    monkeypatch.setattr(catalog, "generate_movies", lambda *a: calls.append(a) or real(*a))
    load_world(settings)
    assert calls == [(17645, 40)]
