"""The site's catalog: its movies (TMDB-like records) and its users, built from a seed.

Generation is pure and vectorised (numpy ``Generator`` streams derived from the
seed, one stream per table, so the movie catalog does not change when only the
number of users does). ``load_world`` is the only function that touches disk:
it caches the two tables as Parquet under
``<home>/world/<seed>-<users>x<movies>/`` and loads them from there afterwards.

The ``World`` it returns holds:

- ``movies``: a pyarrow ``Table``, one row per movie in the order of the movie
  index (row ``i`` is movie ``i``), with exactly the fields of DESIGN.md's
  ``GET /movie/<id>`` answer, in that order (``id`` is the slug);
- numpy views of the movies for fast work (``movie_ids``, ``movie_genres``,
  ``popularity``, ``release_year``, ``runtime``);
- the users as numpy columns indexed by ``user_id - 1`` (``user_age``,
  ``user_occupation`` codes into ``OCCUPATIONS``, ``user_gender`` codes into
  ``GENDERS``), about 3 bytes a user, so a million users stay small.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from movierec.movielog import is_movie_id
from movierec.settings import Settings

log = logging.getLogger(__name__)

# Bump when generation changes: a cache written by another version is rebuilt.
WORLD_VERSION = 1
_META_KEY = b"movierec.world"

# Independent random streams per table (SeedSequence spawn keys).
_MOVIES_STREAM, _USERS_STREAM = 1, 2

# Every release is before this day, so the catalog does not depend on today's date.
CATALOG_DATE = date(2026, 11, 1)
OLDEST_RELEASE = date(1915, 1, 1)

# --- reference data -----------------------------------------------------------

# The real TMDB genre list (id, name), with rough shares of movies carrying each.
GENRES: tuple[tuple[int, str], ...] = (
    (28, "Action"),
    (12, "Adventure"),
    (16, "Animation"),
    (35, "Comedy"),
    (80, "Crime"),
    (99, "Documentary"),
    (18, "Drama"),
    (10751, "Family"),
    (14, "Fantasy"),
    (36, "History"),
    (27, "Horror"),
    (10402, "Music"),
    (9648, "Mystery"),
    (10749, "Romance"),
    (878, "Science Fiction"),
    (10770, "TV Movie"),
    (53, "Thriller"),
    (10752, "War"),
    (37, "Western"),
)
GENRE_NAMES: tuple[str, ...] = tuple(name for _, name in GENRES)
GENRE_INDEX: dict[str, int] = {name: i for i, name in enumerate(GENRE_NAMES)}
_GENRE_WEIGHTS = np.array(
    [67, 35, 19, 130, 44, 39, 200, 27, 23, 14, 46, 15, 25, 67, 30, 8, 76, 12, 10], float
)

# The 21 MovieLens occupations (codes 0..20), spelled as in DESIGN.md, with
# their counts among the MovieLens-1M users.
OCCUPATIONS: tuple[str, ...] = (
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
)
_OCCUPATION_COUNTS = np.array(
    [711, 528, 267, 173, 759, 112, 236, 679, 17, 92, 195, 129, 388, 142, 302, 144, 241, 502, 70, 72, 281],
    float,
)
GENDERS: tuple[str, ...] = ("M", "F")
FEMALE_SHARE = 0.17

# MovieLens-1M age bands (inclusive bounds) and their shares of users.
AGE_BANDS: tuple[tuple[int, int], ...] = (
    (13, 17),
    (18, 24),
    (25, 34),
    (35, 44),
    (45, 49),
    (50, 55),
    (56, 90),
)
_AGE_BAND_COUNTS = np.array([222, 1103, 2096, 1193, 550, 496, 380], float)
# How much likelier each occupation is in each age band (rows: bands). Only the
# occupations that depend strongly on age are listed; everything else is 1.
_OCCUPATION_BY_AGE: dict[str, tuple[float, ...]] = {
    "K-12 student": (40.0, 0.2, 0, 0, 0, 0, 0),
    "college/grad student": (0.6, 4.0, 0.6, 0.05, 0.02, 0.02, 0.01),
    "retired": (0, 0, 0, 0.05, 0.3, 1.5, 12.0),
    "homemaker": (0, 0.3, 1.0, 1.3, 1.3, 1.3, 1.0),
}
_ADULT_JOBS_IN_TEENS = 0.03  # a 15-year-old lawyer is rare but "other" is not

# original_language (ISO 639-1, name, share) and the country that usually produces it.
LANGUAGES: tuple[tuple[str, str, float], ...] = (
    ("en", "English", 0.70),
    ("fr", "French", 0.055),
    ("ja", "Japanese", 0.035),
    ("it", "Italian", 0.03),
    ("de", "German", 0.025),
    ("es", "Spanish", 0.025),
    ("ru", "Russian", 0.012),
    ("hi", "Hindi", 0.012),
    ("ko", "Korean", 0.012),
    ("zh", "Chinese", 0.012),
    ("sv", "Swedish", 0.008),
    ("pt", "Portuguese", 0.008),
    ("da", "Danish", 0.006),
    ("nl", "Dutch", 0.005),
    ("fi", "Finnish", 0.004),
    ("pl", "Polish", 0.004),
    ("tr", "Turkish", 0.004),
    ("cn", "Cantonese", 0.004),
    ("fa", "Persian", 0.003),
    ("no", "Norwegian", 0.002),
)
COUNTRIES: tuple[tuple[str, str], ...] = (
    ("US", "United States of America"),
    ("FR", "France"),
    ("JP", "Japan"),
    ("IT", "Italy"),
    ("DE", "Germany"),
    ("ES", "Spain"),
    ("RU", "Russia"),
    ("IN", "India"),
    ("KR", "South Korea"),
    ("CN", "China"),
    ("SE", "Sweden"),
    ("BR", "Brazil"),
    ("DK", "Denmark"),
    ("NL", "Netherlands"),
    ("FI", "Finland"),
    ("PL", "Poland"),
    ("TR", "Turkey"),
    ("HK", "Hong Kong"),
    ("IR", "Iran"),
    ("NO", "Norway"),
    ("GB", "United Kingdom"),
    ("CA", "Canada"),
    ("AU", "Australia"),
    ("MX", "Mexico"),
    ("BE", "Belgium"),
)
# Country i is the home of language i; English films come from several countries.
_ENGLISH_COUNTRIES = np.array([0, 20, 21, 22])  # US, GB, CA, AU
_ENGLISH_COUNTRY_P = np.array([0.78, 0.14, 0.04, 0.04])
_COUNTRY_WEIGHTS = np.array(
    [30, 8, 2, 4, 6, 3, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10, 5, 2, 1, 2], float
)


def _words(text: str) -> tuple[str, ...]:
    """The distinct whitespace-separated words of ``text``, in order."""
    return tuple(dict.fromkeys(text.split()))


# Seeded vocabulary for titles, company names and overviews (plain ASCII words,
# so every slug is letters, digits and '+').
ADJECTIVES = _words("""Silent Dark Last Lost Broken Golden Hidden Wild Burning Frozen Little Secret Endless
Savage Bright Crimson Hollow Quiet Fallen Eternal Sweet Bitter Electric Midnight Distant Final First
Lonely Perfect Restless Scarlet Shadow Silver Strange Sudden Twisted Violent Wicked Young Ancient
Blind Brave Cold Deadly Empty Fearless Gentle Great Holy Infinite Iron Lucky Mad Naked Northern
Pale Proud Quick Rising Royal Sacred Southern Steel Stolen Tender True Velvet Warm White Black Blue
Red Green Grey Hard Long Deep High Low Open Nameless Forgotten Drowning Shining Howling Crooked
Dangerous Beautiful Invisible Magnificent Reckless Careless Glorious Hungry Sleeping Dreaming Falling
Running Whispering Burnt Cursed Bloody Lovely Noble Humble Furious""")
NOUNS = _words("""River Night Heart Road City Storm Fire Dream Shadow Moon Sun Star Sea Stone Rain Wind Snow
Blood Bone Glass Mirror Garden House Island Mountain Valley Forest Desert Ocean Kingdom Empire Crown
Sword Gun Bullet Knife Mask Ghost Angel Devil Witch King Queen Prince Princess Soldier Hunter Killer
Stranger Lover Widow Orphan Doctor Detective Thief Spy Pilot Sailor Driver Dancer Singer Painter
Writer Teacher Preacher Outlaw Sheriff Ranger Marshal Gambler Bride Groom Brother Sister Mother Father
Son Daughter Family Friend Enemy Game Hour Day Year Summer Winter Autumn Spring Morning Evening Dawn
Dusk Light Darkness Silence Thunder Lightning Echo Memory Promise Secret Truth Lie Word Letter Song
Dance Kiss Touch Voice Face Eye Hand Wall Door Window Bridge Tower Castle Temple Church Harbor Station
Train Ship Plane Car Horse Dog Cat Wolf Bear Lion Tiger Eagle Raven Snake Dragon Spider Machine
Robot Planet Galaxy Signal Code Circuit Frontier Border Line Edge Circle Storm Wave Tide Flood Harvest
Journey Escape Return Revenge Justice Mercy Glory Honor Fortune Treasure Paradise Heaven Hell Legend
Myth Story Tale Chronicle Diary Map Key Ring Chain Wheel Clock Bell Candle Lantern Flame Ash Smoke
Dust Sand Salt Gold Silver Diamond Pearl Rose Lily Orchid Apple Cherry Honey Sugar Coffee Wine
Whiskey Tango Jazz Blues Rhythm Carnival Circus Party Wedding Funeral Trial Verdict Contract Deal
Heist Job Mission Operation Target Witness Suspect Victim Hostage Prisoner Exile Rebel Hero Villain
Monster Beast Creature Alien Invasion Outbreak Plague Cure Experiment Formula Element Atlas Compass
Horizon Voyage Expedition Odyssey Quest Riddle Puzzle Maze Labyrinth Portrait Picture Camera Film
Stage Curtain Ballet Opera Symphony Melody Anthem Ballad Lullaby""")
PLACES = _words("""Paris Tokyo Berlin Rome Vienna Cairo Havana Shanghai Moscow London Chicago Brooklyn Harlem
Memphis Texas Nevada Montana Alaska Dakota Tangier Casablanca Bombay Saigon Manila Istanbul Lisbon
Madrid Venice Naples Sicily Oslo Dublin Glasgow Sydney Tijuana Acapulco Arizona Mississippi
Louisiana Harlem Hollywood Manhattan Baltimore Detroit Boston Seattle Miami Vegas""")
NAMES = _words("""Alice Anna Bella Clara Daisy Emma Grace Hannah Iris Julia Kate Laura Lucy Maria Nora Olivia
Rose Sarah Stella Vera Adam Ben Charlie Daniel Eddie Frank George Harry Jack James Leo Max Nick Oscar
Paul Sam Tom Victor Walter Billy Bonnie Clyde Jimmy Johnny Joe Mickey Molly Annie Frankie Rocky
Ruby Lola Hugo Felix Otto Ivan Boris Amelie Marcel Pierre""")
VERBS_ING = _words("""Finding Chasing Saving Killing Loving Leaving Catching Hunting Becoming Remembering
Forgetting Waiting Meeting Following Searching Raising Burying Seeing Knowing Missing""")
ROLES = _words("""detective nurse teacher soldier journalist lawyer farmer pilot chef boxer singer dancer
priest widow orphan student scientist thief spy mechanic sheriff reporter surgeon painter writer
hacker diplomat smuggler rancher musician""")
GOALS = (
    "find the truth",
    "save the family farm",
    "clear their name",
    "win back an old love",
    "stop a killer",
    "pull off one last job",
    "get home before Christmas",
    "protect a key witness",
    "uncover a conspiracy",
    "survive the winter",
    "finish the race",
    "keep a dangerous secret",
    "escape the city",
    "solve the murder",
    "reunite the band",
    "bring down the syndicate",
    "rebuild a broken friendship",
    "save the planet",
)
DEADLINES = (
    "it is too late",
    "the sun comes up",
    "the storm hits",
    "the wedding",
    "the election",
    "the war reaches them",
    "the money runs out",
    "the trial begins",
    "the town forgets",
    "the last train leaves",
)
_OVERVIEW_TEMPLATES = (
    "{name}, a {adj} {role} from {place}, must {goal} before {deadline}.",
    "When a {adj} {noun} turns up in {place}, {name} and a {role} set out to {goal}.",
    "In {place}, a {role} named {name} discovers a {adj} {noun} and is forced to {goal}.",
    "A {adj} {role} and a {role2} from {place} form an unlikely bond as they try to {goal}.",
    "The story of {name}, a {role} who risked everything in {place} to {goal}.",
    "After a {adj} {noun} changes everything, {name} has until {deadline} to {goal}.",
)
# Title patterns and how often each is used.
_TITLE_TEMPLATES = (
    ("{N}", 6),
    ("The {N}", 8),
    ("{A} {N}", 14),
    ("The {A} {N}", 10),
    ("{N} of the {N2}", 7),
    ("The {N} of {P}", 4),
    ("{A} {P}", 3),
    ("{N} in {P}", 3),
    ("{V} {Name}", 4),
    ("{Name} and {Name2}", 2),
    ("{N} and {N2}", 3),
    ("A {N} for {Name}", 2),
    ("{Name}", 2),
    ("{A} {N} {N2}", 3),
)
# Appended to a title whose slug is already taken (a remake or a namesake).
DISAMBIGUATORS = _words("""Returns Reborn Rising Forever Redux Unleashed Awakening Legacy Revisited Origins
Reckoning Uprising Unbound Eternal Again Story Tales Chronicles Saga Reloaded""")
_COMPANY_SUFFIXES = ("Pictures", "Films", "Studios", "Entertainment", "Productions", "Media", "Filmworks")
_POSTER_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", np.uint8)

# --- the world ----------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """The site's movies and users (see the module docstring for the layout)."""

    seed: int
    movies: pa.Table
    user_age: np.ndarray  # uint8, index user_id - 1
    user_occupation: np.ndarray  # uint8 code into OCCUPATIONS
    user_gender: np.ndarray  # uint8 code into GENDERS

    @property
    def n_users(self) -> int:
        return len(self.user_age)

    @property
    def n_movies(self) -> int:
        return self.movies.num_rows

    @cached_property
    def movie_ids(self) -> np.ndarray:
        """The slugs, as an object array indexed by movie index."""
        return np.array(self.movies.column("id").to_pylist(), dtype=object)

    @cached_property
    def movie_index(self) -> dict[str, int]:
        """Slug -> movie index."""
        return {slug: i for i, slug in enumerate(self.movie_ids)}

    @cached_property
    def movie_genres(self) -> np.ndarray:
        """(n_movies, len(GENRES)) bool: movie i carries genre j (j indexes GENRES)."""
        return genre_matrix(self.movies.column("genres"), self.n_movies)

    @cached_property
    def popularity(self) -> np.ndarray:
        return self.movies.column("popularity").to_numpy()

    @cached_property
    def release_year(self) -> np.ndarray:
        return np.array([int(d[:4]) for d in self.movies.column("release_date").to_pylist()], np.int16)

    @cached_property
    def runtime(self) -> np.ndarray:
        return self.movies.column("runtime").to_numpy()

    def user_record(self, user_id: int) -> dict[str, object] | None:
        """The catalog API's answer for ``user_id``, or None if there is no such user."""
        if not 1 <= user_id <= self.n_users:
            return None
        row = user_id - 1
        return {
            "user_id": user_id,
            "age": int(self.user_age[row]),
            "occupation": OCCUPATIONS[self.user_occupation[row]],
            "gender": GENDERS[self.user_gender[row]],
        }

    def users_table(self) -> pa.Table:
        """The users as the table stored in users.parquet (readable strings)."""
        return pa.table(
            {
                "user_id": pa.array(np.arange(1, self.n_users + 1, dtype=np.int64)),
                "age": pa.array(self.user_age.astype(np.int16)),
                "occupation": pa.array(OCCUPATIONS).take(pa.array(self.user_occupation)),
                "gender": pa.array(GENDERS).take(pa.array(self.user_gender)),
            }
        )


def genre_matrix(genres: pa.ChunkedArray | pa.Array, n_movies: int) -> np.ndarray:
    """Multi-hot (n_movies, len(GENRES)) matrix of a ``genres`` list<struct<id,name>> column."""
    if isinstance(genres, pa.ChunkedArray):
        genres = genres.combine_chunks()
    lookup = np.full(max(gid for gid, _ in GENRES) + 1, -1, np.int16)
    for i, (gid, _) in enumerate(GENRES):
        lookup[gid] = i
    flat_ids = pc.struct_field(pc.list_flatten(genres), "id").to_numpy()
    parents = pc.list_parent_indices(genres).to_numpy()
    matrix = np.zeros((n_movies, len(GENRES)), bool)
    matrix[parents, lookup[flat_ids]] = True
    return matrix


def slugify(title: str, year: int) -> str:
    """``the+matrix+1999``: the lowercase words of the title joined by '+', then the year."""
    return "+".join([*re.findall(r"[a-z0-9]+", title.lower()), f"{year:04d}"])


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def _pick(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    return rng.choice(len(weights), size=n, p=weights / weights.sum())


# --- movies -------------------------------------------------------------------


def generate_movies(seed: int, n: int) -> pa.Table:
    """``n`` TMDB-like movie records (row = movie index), deterministic in (seed, n)."""
    rng = _rng(seed, _MOVIES_STREAM)

    # Release dates skewed recent: truncated exponential in days before CATALOG_DATE.
    span = (CATALOG_DATE - OLDEST_RELEASE).days
    mean_age_days = 16 * 365.25
    u = rng.random(n)
    days_before = -mean_age_days * np.log1p(-u * (1 - np.exp(-span / mean_age_days)))
    days_before = np.clip(days_before.astype(np.int64), 1, span)
    release_ord = CATALOG_DATE.toordinal() - days_before
    years = np.array([date.fromordinal(int(o)).year for o in release_ord], np.int64)
    years_ago = days_before / 365.25

    genre_order, genre_count = _draw_genres(rng, n)
    collection_of, collections = _draw_collections(rng, n, release_ord)
    # Sequels share the genres of the first film of their collection.
    for members in collections:
        genre_order[members[1:]] = genre_order[members[0]]
        genre_count[members[1:]] = genre_count[members[0]]
    genres = np.zeros((n, len(GENRES)), bool)
    genres[np.arange(n)[:, None], genre_order] = np.arange(genre_order.shape[1]) < genre_count[:, None]

    # Heavy-tailed popularity (lognormal), boosted for recent releases.
    log_pop = 0.2 + 1.35 * rng.standard_normal(n) + 1.0 * np.exp(-years_ago / 3)
    popularity = np.round(np.exp(log_pop), 3)
    pop_z = (log_pop - log_pop.mean()) / log_pop.std()

    vote_count = np.maximum(
        np.round(np.exp(1.3 * log_pop + 2.6 + 0.6 * rng.standard_normal(n) + 0.3 * np.log1p(years_ago))) - 1,
        0,
    ).astype(np.int64)
    genre_rating = np.zeros(len(GENRES))
    genre_rating[[GENRE_INDEX[g] for g in ("Documentary", "Animation", "History", "War")]] = (
        0.5,
        0.3,
        0.2,
        0.2,
    )
    genre_rating[[GENRE_INDEX[g] for g in ("Horror", "TV Movie", "Science Fiction")]] = (-0.7, -0.3, -0.1)
    public_quality = rng.standard_normal(n)  # what voters see; the truth adds what they don't
    rating_noise = 1.5 * rng.standard_normal(n) / np.sqrt(np.maximum(vote_count, 1))
    vote_average = np.clip(
        6.1 + 0.9 * public_quality + genres @ genre_rating / np.maximum(genres.sum(1), 1) + rating_noise,
        1,
        10,
    )
    vote_average = np.where(vote_count > 0, np.round(vote_average, 1), 0.0)

    short = genres[:, [GENRE_INDEX["Animation"], GENRE_INDEX["Documentary"], GENRE_INDEX["TV Movie"]]].any(1)
    runtime = np.clip(np.round(np.where(short, 88, 104) + 18 * rng.standard_normal(n)), 40, 240).astype(
        np.int64
    )

    language = _pick(rng, n, np.array([w for _, _, w in LANGUAGES]))
    countries, n_countries = _draw_countries(rng, language)
    spoken, n_spoken = _draw_spoken(rng, language)

    budget_p = 1 / (1 + np.exp(-(-1.2 + 0.8 * pop_z + 0.6 * (language == 0) - 0.02 * years_ago)))
    has_budget = rng.random(n) < budget_p
    budget = np.clip(np.exp(15.2 + 0.5 * pop_z + 1.0 * rng.standard_normal(n)), 1e4, 4e8)
    budget = np.where(has_budget, np.round(budget / 1000) * 1000, 0).astype(np.int64)
    multiple = np.exp(0.3 + 0.5 * pop_z + 1.0 * rng.standard_normal(n))
    has_revenue = np.where(has_budget, rng.random(n) < 0.75, rng.random(n) < 0.05)
    revenue_base = np.where(has_budget, budget, np.exp(15 + 0.5 * pop_z))
    revenue = np.where(has_revenue, np.round(revenue_base * multiple), 0).astype(np.int64)

    companies = _company_pool(rng)
    company_idx, n_companies = _draw_companies(rng, n, len(companies[0]))

    titles = _draw_titles(rng, n)
    for members in collections:
        for part, m in enumerate(members[1:], start=2):
            titles[m] = f"{titles[members[0]]} {part}"
    titles, slugs = _unique_slugs(rng, titles, years)
    _check_slugs(slugs)
    collection_names = [f"{titles[members[0]]} Collection" for members in collections]

    tmdb_id = _ids_by_release(rng, release_ord, 2, 1_200_000)
    imdb_num = _ids_by_release(rng, release_ord, 1, 9_999_999)
    homepage_p = 0.05 + 0.5 * np.exp(-years_ago / 10)
    has_homepage = rng.random(n) < homepage_p
    overviews = _draw_overviews(rng, n)

    return pa.table(
        {
            "id": pa.array(slugs, pa.string()),
            "tmdb_id": pa.array(tmdb_id, pa.int64()),
            "imdb_id": pa.array([f"tt{x:07d}" for x in imdb_num], pa.string()),
            "title": pa.array(titles, pa.string()),
            "original_title": pa.array(titles, pa.string()),
            "adult": pa.array(rng.random(n) < 0.0005),
            "belongs_to_collection": _collection_column(rng, n, collection_of, collection_names),
            "budget": pa.array(budget, pa.int64()),
            "genres": _list_of_structs(
                *_rows_to_flat(genre_order, genre_count),
                {
                    "id": pa.array([gid for gid, _ in GENRES], pa.int32()),
                    "name": pa.array(GENRE_NAMES, pa.string()),
                },
            ),
            "homepage": pa.array(
                [
                    f"https://www.{s.rsplit('+', 1)[0].replace('+', '')}movie.com/" if h else ""
                    for s, h in zip(slugs, has_homepage, strict=True)
                ],
                pa.string(),
            ),
            "original_language": pa.array([LANGUAGES[i][0] for i in language], pa.string()),
            "overview": pa.array(overviews, pa.string()),
            "popularity": pa.array(popularity, pa.float64()),
            "poster_path": pa.array(_image_paths(rng, n), pa.string()),
            "production_companies": _list_of_structs(
                *_rows_to_flat(company_idx, n_companies),
                {"id": pa.array(companies[0], pa.int32()), "name": pa.array(companies[1], pa.string())},
            ),
            "production_countries": _list_of_structs(
                *_rows_to_flat(countries, n_countries),
                {
                    "iso_3166_1": pa.array([c for c, _ in COUNTRIES], pa.string()),
                    "name": pa.array([name for _, name in COUNTRIES], pa.string()),
                },
            ),
            "release_date": pa.array(
                [date.fromordinal(int(o)).isoformat() for o in release_ord], pa.string()
            ),
            "revenue": pa.array(revenue, pa.int64()),
            "runtime": pa.array(runtime, pa.int64()),
            "spoken_languages": _list_of_structs(
                *_rows_to_flat(spoken, n_spoken),
                {
                    "iso_639_1": pa.array([code for code, _, _ in LANGUAGES], pa.string()),
                    "name": pa.array([name for _, name, _ in LANGUAGES], pa.string()),
                },
            ),
            "status": pa.array(["Released"] * n, pa.string()),
            "vote_average": pa.array(vote_average, pa.float64()),
            "vote_count": pa.array(vote_count, pa.int64()),
        }
    )


def _draw_genres(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """1-3 distinct genres per movie, weighted by how common each is (Gumbel top-k).

    Returns the candidate genre indices of each movie, main genre first (n, 3),
    and how many of them the movie has.
    """
    count = rng.choice(3, size=n, p=[0.42, 0.38, 0.20]) + 1
    keys = np.log(_GENRE_WEIGHTS) + rng.gumbel(size=(n, len(GENRES)))
    return np.argsort(-keys, axis=1)[:, :3], count


def _draw_collections(
    rng: np.random.Generator, n: int, release_ord: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """About 5% of movies are parts of 2-4 film collections (franchises).

    Returns each movie's collection number (-1: none) and the members of each
    collection in release order (the first one names the collection).
    """
    sizes = rng.choice([2, 3, 4], size=n // 45, p=[0.6, 0.3, 0.1])
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n // 2, side="right")]
    members = rng.permutation(n)[: sizes.sum()]
    collection_of = np.full(n, -1, np.int64)
    collections = []
    for c, group in enumerate(np.split(members, np.cumsum(sizes)[:-1]) if len(sizes) else []):
        group = group[np.argsort(release_ord[group], kind="stable")]
        collection_of[group] = c
        collections.append(group)
    return collection_of, collections


def _collection_column(
    rng: np.random.Generator, n: int, collection_of: np.ndarray, names: list[str]
) -> pa.Array:
    """TMDB's ``belongs_to_collection``: the collection's summary, or null."""
    count = len(names)
    ids = 10 + rng.choice(1_000_000, size=count, replace=False) if count else np.zeros(0, np.int64)
    posters, backdrops = _image_paths(rng, count), _image_paths(rng, count)
    fields = [
        ("id", pa.int32()),
        ("name", pa.string()),
        ("poster_path", pa.string()),
        ("backdrop_path", pa.string()),
    ]
    member = collection_of >= 0
    idx = np.where(member, collection_of, 0)
    values = {
        "id": pa.array(ids, pa.int32()),
        "name": pa.array(names, pa.string()),
        "poster_path": pa.array(posters, pa.string()),
        "backdrop_path": pa.array(backdrops, pa.string()),
    }
    if not count:  # no collections at this size: an all-null column of the right type
        return pa.nulls(n, pa.struct(fields))
    children = [values[name].take(pa.array(idx)) for name, _ in fields]
    return pa.StructArray.from_arrays(
        children, fields=[pa.field(k, t) for k, t in fields], mask=pa.array(~member)
    )


def _draw_countries(rng: np.random.Generator, language: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(language)
    first = language.copy()  # country i is the home of language i
    english = language == 0
    first[english] = _ENGLISH_COUNTRIES[
        rng.choice(len(_ENGLISH_COUNTRIES), size=int(english.sum()), p=_ENGLISH_COUNTRY_P)
    ]
    second = _pick(rng, n, _COUNTRY_WEIGHTS)
    count = np.where((rng.random(n) < 0.2) & (second != first), 2, 1)
    return np.stack([first, second], 1), count


def _draw_spoken(rng: np.random.Generator, language: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(language)
    other = np.where(language == 0, _pick(rng, n, np.array([w for _, _, w in LANGUAGES])), 0)
    count = np.where((rng.random(n) < 0.25) & (other != language), 2, 1)
    return np.stack([language, other], 1), count


def _company_pool(rng: np.random.Generator, size: int = 1500) -> tuple[np.ndarray, list[str]]:
    words = NOUNS + ADJECTIVES + PLACES
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < size:
        batch = zip(
            rng.integers(len(words), size=size),
            rng.integers(len(_COMPANY_SUFFIXES), size=size),
            strict=True,
        )
        for w, s in batch:
            name = f"{words[w]} {_COMPANY_SUFFIXES[s]}"
            if name not in seen and len(names) < size:
                seen.add(name)
                names.append(name)
    ids = 1 + rng.choice(200_000, size=size, replace=False)
    return ids, names


def _draw_companies(rng: np.random.Generator, n: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """0-3 distinct production companies per movie; a few studios make many films (Zipf)."""
    weights = 1 / (np.arange(pool) + 5.0) ** 1.1
    picks = _pick(rng, n * 3, weights).reshape(n, 3)
    for _ in range(20):  # redraw duplicates within a row; converges in a couple of rounds
        dup = (picks[:, 1] == picks[:, 0]) | (picks[:, 2] == picks[:, 0]) | (picks[:, 2] == picks[:, 1])
        if not dup.any():
            break
        picks[dup] = _pick(rng, int(dup.sum()) * 3, weights).reshape(-1, 3)
    count = rng.choice(4, size=n, p=[0.12, 0.45, 0.28, 0.15])
    return picks, count


def _draw_titles(rng: np.random.Generator, n: int) -> list[str]:
    shapes = [t for t, _ in _TITLE_TEMPLATES]
    shape = _pick(rng, n, np.array([w for _, w in _TITLE_TEMPLATES], float))
    slots = {
        "A": (ADJECTIVES, rng.integers(len(ADJECTIVES), size=n)),
        "N": (NOUNS, rng.integers(len(NOUNS), size=n)),
        "N2": (NOUNS, rng.integers(len(NOUNS), size=n)),
        "P": (PLACES, rng.integers(len(PLACES), size=n)),
        "V": (VERBS_ING, rng.integers(len(VERBS_ING), size=n)),
        "Name": (NAMES, rng.integers(len(NAMES), size=n)),
        "Name2": (NAMES, rng.integers(len(NAMES), size=n)),
    }
    return [
        shapes[shape[i]].format(**{key: words[idx[i]] for key, (words, idx) in slots.items()})
        for i in range(n)
    ]


def _unique_slugs(
    rng: np.random.Generator, titles: list[str], years: np.ndarray
) -> tuple[list[str], list[str]]:
    """Make every slug unique by appending a disambiguator word to the later namesake."""
    extra = rng.integers(len(DISAMBIGUATORS), size=len(titles))
    seen: set[str] = set()
    out_titles, slugs = [], []
    for i, (title, year) in enumerate(zip(titles, years.tolist(), strict=True)):
        slug, step = slugify(title, year), 0
        while slug in seen:
            title = f"{title} {DISAMBIGUATORS[(extra[i] + step) % len(DISAMBIGUATORS)]}"
            slug, step = slugify(title, year), step + 1
        seen.add(slug)
        out_titles.append(title)
        slugs.append(slug)
    return out_titles, slugs


def _draw_overviews(rng: np.random.Generator, n: int) -> list[str]:
    template = rng.integers(len(_OVERVIEW_TEMPLATES), size=n)
    draws = {
        key: (words, rng.integers(len(words), size=n))
        for key, words in (
            ("name", NAMES),
            ("adj", [w.lower() for w in ADJECTIVES]),
            ("noun", [w.lower() for w in NOUNS]),
            ("role", ROLES),
            ("role2", ROLES),
            ("place", PLACES),
            ("goal", GOALS),
            ("deadline", DEADLINES),
        )
    }
    return [
        _OVERVIEW_TEMPLATES[template[i]].format(**{key: words[idx[i]] for key, (words, idx) in draws.items()})
        for i in range(n)
    ]


def _ids_by_release(rng: np.random.Generator, release_ord: np.ndarray, low: int, high: int) -> np.ndarray:
    """Unique ids that grow with release date (as TMDB and IMDb ids roughly do)."""
    ids = np.sort(low + rng.choice(high - low, size=len(release_ord), replace=False))
    order = np.argsort(release_ord + rng.normal(0, 2000, len(release_ord)), kind="stable")
    out = np.empty_like(ids)
    out[order] = ids
    return out


def _image_paths(rng: np.random.Generator, n: int) -> list[str]:
    """TMDB-style ``/<27 characters>.jpg`` paths."""
    chars = _POSTER_ALPHABET[rng.integers(len(_POSTER_ALPHABET), size=(n, 27))]
    return [f"/{raw.decode()}.jpg" for raw in chars.view("S27").ravel()]


def _rows_to_flat(matrix: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first ``counts[i]`` entries of each row, flattened, and the list offsets."""
    keep = np.arange(matrix.shape[1])[None, :] < counts[:, None]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return matrix[keep], offsets


def _list_of_structs(flat_idx: np.ndarray, offsets: np.ndarray, pool: dict[str, pa.Array]) -> pa.ListArray:
    """list<struct<...>> whose items are rows ``flat_idx`` of the ``pool`` columns."""
    take = pa.array(flat_idx.astype(np.int64))
    items = pa.StructArray.from_arrays([col.take(take) for col in pool.values()], names=list(pool))
    return pa.ListArray.from_arrays(pa.array(offsets), items)


# --- users --------------------------------------------------------------------


def generate_users(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(age, occupation code, gender code) of users 1..n, each a uint8 array indexed by user_id - 1."""
    rng = _rng(seed, _USERS_STREAM)
    band = _pick(rng, n, _AGE_BAND_COUNTS)
    low = np.array([lo for lo, _ in AGE_BANDS])
    high = np.array([hi for _, hi in AGE_BANDS])
    age = low[band] + np.floor(rng.random(n) * (high[band] - low[band] + 1)).astype(np.int64)
    oldest = band == len(AGE_BANDS) - 1  # 56+: fewer at every year of age
    span = 90 - 56 + 1  # truncated exponential, so no pile-up at 90
    tail = rng.random(int(oldest.sum())) * (1 - np.exp(-span / 8.0))
    age[oldest] = 56 + np.minimum((-8.0 * np.log1p(-tail)).astype(np.int64), span - 1)

    occupation = np.empty(n, np.uint8)
    for b, _ in enumerate(AGE_BANDS):  # occupations depend on age (students, retirees)
        rows = np.flatnonzero(band == b)
        occupation[rows] = _pick(rng, len(rows), _occupation_weights(b))
    gender = (rng.random(n) < FEMALE_SHARE).astype(np.uint8)  # code 1 = "F"
    return age.astype(np.uint8), occupation, gender


def _occupation_weights(band: int) -> np.ndarray:
    weights = _OCCUPATION_COUNTS.copy()
    if band == 0:
        teen_ok = {"other or not specified", "K-12 student", "college/grad student", "unemployed"}
        for i, name in enumerate(OCCUPATIONS):
            if name not in teen_ok:
                weights[i] *= _ADULT_JOBS_IN_TEENS
    for name, factors in _OCCUPATION_BY_AGE.items():
        weights[OCCUPATIONS.index(name)] *= factors[band]
    return weights


# --- cache ----------------------------------------------------------------------


def world_dir(settings: Settings) -> Path:
    """Where the world of these settings is cached (the truth file lives there too)."""
    return settings.home / "world" / f"{settings.seed}-{settings.scale_users}x{settings.scale_movies}"


def load_world(settings: Settings) -> World:
    """The world of ``settings``: from the Parquet cache, building and caching it first if needed."""
    folder = world_dir(settings)
    movies_path, users_path = folder / "movies.parquet", folder / "users.parquet"
    stamp = {"version": WORLD_VERSION, "seed": settings.seed}
    if not (
        _cached(movies_path, stamp | {"rows": settings.scale_movies})
        and _cached(users_path, stamp | {"rows": settings.scale_users})
    ):
        started = time.perf_counter()
        log.info("building world %s", folder)
        movies = generate_movies(settings.seed, settings.scale_movies)
        log.info("movies: %d generated in %.1fs", movies.num_rows, time.perf_counter() - started)
        mark = time.perf_counter()
        age, occupation, gender = generate_users(settings.seed, settings.scale_users)
        log.info("users: %d generated in %.1fs", len(age), time.perf_counter() - mark)
        mark = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        _write(movies, movies_path, stamp | {"rows": movies.num_rows})
        users = World(settings.seed, movies, age, occupation, gender).users_table()
        _write(users, users_path, stamp | {"rows": users.num_rows})
        log.info(
            "world written in %.1fs (%.1fs in all)", time.perf_counter() - mark, time.perf_counter() - started
        )
    # Read back even after building, so a fresh world and a cached one are the same thing.
    started = time.perf_counter()
    movies = pq.read_table(movies_path).replace_schema_metadata(None)
    users = pq.read_table(users_path)
    if not np.array_equal(users.column("user_id").to_numpy(), np.arange(1, users.num_rows + 1)):
        raise ValueError(f"{users_path}: user ids are not 1..{users.num_rows}")
    world = World(
        seed=settings.seed,
        movies=movies,
        user_age=users.column("age").to_numpy().astype(np.uint8),
        user_occupation=_codes(users.column("occupation"), OCCUPATIONS),
        user_gender=_codes(users.column("gender"), GENDERS),
    )
    log.info(
        "world loaded: %d movies, %d users in %.1fs",
        world.n_movies,
        world.n_users,
        time.perf_counter() - started,
    )
    return world


def _codes(column: pa.ChunkedArray, values: tuple[str, ...]) -> np.ndarray:
    codes = pc.index_in(column, value_set=pa.array(values))
    if codes.null_count:
        raise ValueError(f"unexpected value in {values[:3]}... column")
    return codes.to_numpy().astype(np.uint8)


def _cached(path: Path, stamp: dict[str, int]) -> bool:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (FileNotFoundError, pa.ArrowInvalid):
        return False
    return json.loads(meta.get(_META_KEY, b"{}")) == stamp


def _write(table: pa.Table, path: Path, stamp: dict[str, int]) -> None:
    # Written beside and renamed: a reader (or a crash) never sees half a file.
    table = table.replace_schema_metadata({_META_KEY: json.dumps(stamp).encode()})
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(table, partial, compression="zstd")
    os.replace(partial, path)


def _check_slugs(slugs: list[str]) -> None:
    """Raise if a slug is not a movielog movie id or appears twice (a bug, never expected)."""
    bad = [s for s in slugs if not is_movie_id(s)]
    if bad or len(set(slugs)) != len(slugs):
        raise AssertionError(f"bad or duplicate slugs: {bad[:5]}")
