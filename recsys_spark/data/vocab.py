"""Style vocabulary of the synthetic platform, modelled on real Suno/Udio tags and prompts.

The tag words and prompt phrasing follow ../shared/data/aims_prompts_suno_udio (tag vocabulary
with counts) and ../shared/data/suno_sunorecsys_234 (real songs): short comma-separated style
descriptions ("dreamy synthwave, analog pads, female vocals, 100 bpm"), genre + sub-genre +
instrument + mood + vocal tags. Each style also carries the sound parameters used to synthesise
its audio (base pitch, waveform brightness, tempo, noise), so audio content depends on style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Style:
    name: str
    genre: str
    tags: Tuple[str, ...]
    instruments: Tuple[str, ...]
    moods: Tuple[str, ...]
    vocals: Tuple[str, ...]
    bpm: Tuple[int, int]
    base_hz: float          # fundamental of the synthesised audio
    brightness: float       # 0 = pure sine, 1 = many harmonics
    noise: float            # share of noise in the signal
    popularity: float       # relative share of the platform's listening


STYLES: Tuple[Style, ...] = (
    Style("synthwave", "electronic", ("synthwave", "retrowave", "80s", "neon", "outrun"),
          ("analog synths", "gated drums", "arpeggiated bass"), ("nostalgic", "dreamy", "driving"),
          ("female vocals", "male vocals", "instrumental"), (95, 120), 220.0, 0.6, 0.02, 1.0),
    Style("lofi", "hip hop", ("lo-fi", "lofi hip hop", "chillhop", "jazzy", "vinyl crackle"),
          ("dusty piano", "mellow rhodes", "boom bap drums"), ("chill", "relaxing", "melancholic"),
          ("instrumental", "soft female vocals"), (70, 90), 261.6, 0.2, 0.08, 1.3),
    Style("hyperpop", "pop", ("hyperpop", "glitchcore", "synthcore", "kawaii", "fast bpm"),
          ("pitched vocals", "distorted 808", "glitchy synths"), ("chaotic", "euphoric", "playful"),
          ("lolita vocal", "autotuned vocals", "female vocals"), (150, 180), 523.3, 0.9, 0.05, 0.8),
    Style("orchestral", "classical", ("epic orchestral", "cinematic", "soundtrack", "choir", "trailer music"),
          ("strings", "brass", "timpani"), ("epic", "heroic", "dramatic"),
          ("choir", "instrumental"), (80, 110), 130.8, 0.4, 0.01, 0.7),
    Style("drum_and_bass", "electronic", ("drum and bass", "liquid dnb", "jungle", "breakbeat", "atmospheric"),
          ("amen break", "reese bass", "pads"), ("energetic", "atmospheric", "dark"),
          ("female vocals", "instrumental", "mc vocals"), (170, 176), 110.0, 0.7, 0.10, 0.6),
    Style("country", "country", ("country", "americana", "storytelling", "heartfelt", "nashville"),
          ("acoustic guitar", "pedal steel", "fiddle"), ("heartfelt", "nostalgic", "warm"),
          ("male vocals", "female vocals", "twangy vocals"), (85, 120), 196.0, 0.35, 0.02, 0.7),
    Style("metal", "metal", ("metal", "heavy metal", "metalcore", "aggressive", "double bass drum"),
          ("distorted guitars", "double kick drums", "bass guitar"), ("aggressive", "dark", "powerful"),
          ("screamed vocals", "male vocals", "clean and harsh vocals"), (140, 200), 82.4, 1.0, 0.15, 0.6),
    Style("rnb", "r&b", ("r&b", "neo soul", "smooth", "soulful", "sensual"),
          ("rhodes", "smooth bass", "finger snaps"), ("sensual", "smooth", "romantic"),
          ("female vocals", "male vocals", "falsetto"), (65, 95), 233.1, 0.3, 0.03, 0.9),
    Style("kpop", "pop", ("k-pop", "dance pop", "catchy", "bright", "idol"),
          ("punchy synths", "four on the floor", "claps"), ("bright", "upbeat", "catchy"),
          ("female vocals", "boy group vocals", "rap verse"), (110, 130), 440.0, 0.65, 0.03, 1.0),
    Style("ambient", "electronic", ("ambient", "drone", "ethereal", "soundscape", "meditative"),
          ("pads", "field recordings", "granular textures"), ("calm", "ethereal", "spacious"),
          ("instrumental", "wordless vocals"), (50, 70), 146.8, 0.1, 0.20, 0.5),
    Style("reggae", "reggae", ("reggae", "dub", "roots", "offbeat", "laid-back"),
          ("skank guitar", "deep bass", "organ bubble"), ("laid-back", "sunny", "positive"),
          ("male vocals", "toasting", "harmonies"), (70, 90), 174.6, 0.4, 0.04, 0.4),
    Style("jazz", "jazz", ("jazz", "swing", "bebop", "smooth jazz", "big band"),
          ("saxophone", "upright bass", "brushed drums"), ("smooth", "sophisticated", "late night"),
          ("instrumental", "crooner vocals", "scat vocals"), (100, 180), 293.7, 0.45, 0.03, 0.5),
    Style("house", "electronic", ("house", "deep house", "edm", "four on the floor", "club"),
          ("kick drum", "chopped vocals", "piano stabs"), ("euphoric", "groovy", "uplifting"),
          ("female vocals", "vocal chops", "instrumental"), (120, 128), 349.2, 0.55, 0.06, 1.1),
    Style("trap", "hip hop", ("trap", "808", "dark trap", "hi-hats", "hard"),
          ("808 bass", "rolling hi-hats", "dark bells"), ("dark", "hard", "menacing"),
          ("male rap", "autotuned vocals", "female rap"), (130, 150), 65.4, 0.75, 0.08, 1.2),
    Style("indie_folk", "folk", ("indie folk", "acoustic", "whimsical", "ukulele", "lo-fi folk"),
          ("ukulele", "acoustic guitar", "glockenspiel"), ("whimsical", "bittersweet", "warm"),
          ("soft female vocals", "male vocals", "harmonies"), (90, 120), 329.6, 0.25, 0.02, 0.6),
    Style("punk", "rock", ("punk rock", "pop punk", "raw", "fast", "garage"),
          ("power chords", "fast drums", "bass guitar"), ("rebellious", "energetic", "raw"),
          ("shouted vocals", "male vocals", "gang vocals"), (160, 200), 98.0, 0.95, 0.12, 0.5),
    Style("piano", "classical", ("solo piano", "romantic", "neoclassical", "emotional", "minimal"),
          ("grand piano", "soft strings", "felt piano"), ("emotional", "introspective", "tender"),
          ("instrumental",), (60, 90), 392.0, 0.15, 0.01, 0.6),
    Style("city_pop", "pop", ("city pop", "japanese", "80s", "funky", "groovy"),
          ("funky bass", "electric piano", "brass section"), ("groovy", "sunny", "nostalgic"),
          ("japanese female vocals", "female vocals"), (100, 120), 277.2, 0.5, 0.03, 0.6),
)

QUALIFIERS = ("catchy", "melodic", "uplifting", "atmospheric", "emotional", "energetic",
              "anthemic", "reverb", "lush", "minimal", "groovy", "dark", "bright", "polished")

TITLE_ADJ = ("Neon", "Midnight", "Golden", "Broken", "Electric", "Silent", "Velvet", "Crimson",
             "Lost", "Endless", "Paper", "Satellite", "Wild", "Glass", "Summer", "Hollow",
             "Cosmic", "Faded", "Lucky", "Frozen", "Sugar", "Burning", "Quiet", "Infinite")
TITLE_NOUN = ("Dreams", "Highway", "Heart", "Skyline", "Echoes", "Rain", "Fire", "Memories",
              "Ocean", "Stars", "City", "Ghost", "Horizon", "Signal", "Garden", "Waves",
              "Machine", "Letters", "Shadows", "Daylight", "River", "Thunder", "Moon", "Parade")

PROMPT_TEMPLATES = (
    "{mood} {tag0} with {inst0} and {inst1}, {vocal}, {bpm} bpm",
    "{tag0}, {tag1}, {inst0}, {mood}, {qual}",
    "a {mood} {tag0} song about {topic}, {inst0}, {vocal}",
    "{tag1} {tag0}, {qual}, {mood}, {inst1}, {bpm} bpm, {vocal}",
    "{tag0}, {inst0}, {inst1}, {qual}, {mood} vibe",
)

TOPICS = ("driving at night", "a summer love", "leaving home", "the ocean", "a lost friend",
          "city lights", "growing up", "a rainy day", "space travel", "heartbreak", "freedom",
          "my cat", "monday mornings", "the last train", "dancing alone")
