"""Write ``train.jsonl`` and ``eval.jsonl`` for the English word-forms example (events/specs/word-forms-local.json).

Two relations, each asked with one worked example in the prompt (a one-shot chat):

* the simple past of a verb (``walk`` -> ``walked``, ``bring`` -> ``brought``, ``stop`` -> ``stopped``);
* the plural of a noun (``cat`` -> ``cats``, ``child`` -> ``children``, ``city`` -> ``cities``).

Only forms with one accepted answer are listed (no ``hanged``/``hung``, ``cacti``/``cactuses``). The split is
seeded and stratified: every relation and every kind (regular, irregular) lands in both files, and no word is
in both. The word lists were written for this project; the data is released under the repository's licence.

Run ``python events/data/word-forms/build.py`` to rewrite the files (the output is deterministic; a unit test
checks the shipped files match it).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 0
#: Held-out share of each (relation, kind) stratum.
EVAL_SHARE = 0.2


def _pairs(text: str) -> dict[str, str]:
    """``word:form`` pairs separated by whitespace -> ``{word: form}``."""
    return dict(pair.split(":", 1) for pair in text.split())


IRREGULAR_PAST = _pairs(
    """
arise:arose awake:awoke beat:beat become:became begin:began bend:bent bet:bet bind:bound bite:bit bleed:bled
blow:blew break:broke breed:bred bring:brought build:built burst:burst buy:bought catch:caught choose:chose
cling:clung come:came cost:cost creep:crept cut:cut deal:dealt dig:dug do:did draw:drew drink:drank drive:drove
eat:ate fall:fell feed:fed feel:felt fight:fought find:found flee:fled fling:flung fly:flew forbid:forbade
forget:forgot forgive:forgave freeze:froze get:got give:gave grind:ground grow:grew have:had hear:heard hide:hid
hit:hit hold:held hurt:hurt keep:kept know:knew lay:laid lead:led leave:left lend:lent let:let lose:lost
make:made mean:meant meet:met pay:paid put:put quit:quit read:read ride:rode ring:rang rise:rose run:ran say:said
see:saw seek:sought sell:sold send:sent set:set shake:shook shoot:shot shrink:shrank shut:shut sing:sang
sink:sank sit:sat sleep:slept slide:slid speak:spoke spend:spent spin:spun split:split spread:spread
stand:stood steal:stole stick:stuck sting:stung strike:struck swear:swore sweep:swept swim:swam swing:swung
take:took teach:taught tear:tore tell:told think:thought throw:threw understand:understood wake:woke wear:wore
weep:wept win:won write:wrote
"""
)
REGULAR_PAST = _pairs(
    """
walk:walked play:played jump:jumped talk:talked open:opened clean:cleaned cook:cooked help:helped look:looked
need:needed paint:painted ask:asked answer:answered borrow:borrowed brush:brushed call:called climb:climbed
collect:collected count:counted explain:explained fill:filled finish:finished fix:fixed follow:followed
greet:greeted guess:guessed join:joined kick:kicked kiss:kissed knock:knocked laugh:laughed learn:learned
lift:lifted listen:listened mix:mixed offer:offered order:ordered pack:packed park:parked pass:passed
pick:picked plant:planted point:pointed pour:poured pull:pulled push:pushed rain:rained reach:reached
relax:relaxed remember:remembered repeat:repeated rest:rested sail:sailed shout:shouted sign:signed
start:started thank:thanked touch:touched trust:trusted turn:turned visit:visited wait:waited want:wanted
wash:washed watch:watched wish:wished work:worked yell:yelled enjoy:enjoyed stay:stayed pray:prayed obey:obeyed
delay:delayed destroy:destroyed employ:employed
like:liked love:loved live:lived move:moved dance:danced arrive:arrived bake:baked change:changed
decide:decided hate:hated hope:hoped smile:smiled sneeze:sneezed taste:tasted use:used wave:waved close:closed
save:saved share:shared
plan:planned stop:stopped drop:dropped hug:hugged nod:nodded rob:robbed rub:rubbed shop:shopped skip:skipped
stir:stirred admit:admitted prefer:preferred beg:begged chat:chatted clap:clapped grab:grabbed hop:hopped
jog:jogged plug:plugged rip:ripped slip:slipped tap:tapped trip:tripped wrap:wrapped
study:studied try:tried carry:carried cry:cried hurry:hurried marry:married worry:worried copy:copied
apply:applied deny:denied dry:dried fry:fried reply:replied tidy:tidied bury:buried empty:emptied envy:envied
"""
)
IRREGULAR_PLURAL = _pairs(
    """
child:children man:men woman:women mouse:mice foot:feet tooth:teeth goose:geese person:people ox:oxen
louse:lice crisis:crises analysis:analyses thesis:theses phenomenon:phenomena criterion:criteria sheep:sheep
deer:deer moose:moose series:series species:species leaf:leaves knife:knives wife:wives life:lives wolf:wolves
half:halves shelf:shelves loaf:loaves thief:thieves calf:calves elf:elves potato:potatoes tomato:tomatoes
hero:heroes echo:echoes veto:vetoes
"""
)
REGULAR_PLURAL = _pairs(
    """
roof:roofs chief:chiefs belief:beliefs cliff:cliffs piano:pianos photo:photos radio:radios video:videos
zoo:zoos kangaroo:kangaroos
city:cities baby:babies lady:ladies party:parties story:stories country:countries family:families
puppy:puppies berry:berries cherry:cherries fly:flies spy:spies day:days boy:boys key:keys toy:toys
monkey:monkeys donkey:donkeys valley:valleys journey:journeys
box:boxes fox:foxes bus:buses class:classes glass:glasses dress:dresses kiss:kisses church:churches
watch:watches match:matches bench:benches lunch:lunches beach:beaches brush:brushes dish:dishes wish:wishes
bush:bushes tax:taxes quiz:quizzes witch:witches peach:peaches coach:coaches
cat:cats dog:dogs book:books car:cars tree:trees house:houses bird:birds chair:chairs table:tables pen:pens
door:doors window:windows hat:hats shoe:shoes cup:cups bottle:bottles flower:flowers river:rivers
mountain:mountains road:roads ship:ships train:trains plane:planes horse:horses cow:cows pig:pigs duck:ducks
frog:frogs snake:snakes lion:lions tiger:tigers bear:bears rabbit:rabbits egg:eggs cake:cakes bell:bells
ball:balls kite:kites lamp:lamps clock:clocks coin:coins ring:rings star:stars cloud:clouds rock:rocks
stone:stones hill:hills lake:lakes farm:farms school:schools teacher:teachers doctor:doctors farmer:farmers
king:kings queen:queens girl:girls friend:friends student:students idea:ideas song:songs game:games
garden:gardens bridge:bridges street:streets village:villages island:islands forest:forests desk:desks
bag:bags bed:beds pillow:pillows spoon:spoons fork:forks plate:plates bowl:bowls banana:bananas
orange:oranges carrot:carrots onion:onions lemon:lemons grape:grapes boat:boats truck:trucks bike:bikes
computer:computers phone:phones camera:cameras picture:pictures letter:letters word:words name:names
hand:hands eye:eyes ear:ears nose:noses arm:arms leg:legs
"""
)

#: relation -> (question template, the worked example's word and answer).
RELATIONS: dict[str, tuple[str, str, str]] = {
    "past": ("What is the past tense of the verb '{}'?", "go", "went"),
    "plural": ("What is the plural of '{}'?", "apple", "apples"),
}
STRATA: list[tuple[str, str, dict[str, str]]] = [
    ("past", "irregular", IRREGULAR_PAST),
    ("past", "regular", REGULAR_PAST),
    ("plural", "irregular", IRREGULAR_PLURAL),
    ("plural", "regular", REGULAR_PLURAL),
]


def record(relation: str, word: str, answer: str) -> dict[str, list[dict[str, str]]]:
    """One chat record: the worked example, then the question; the last message is the reference answer."""
    template, shot_word, shot_answer = RELATIONS[relation]
    return {
        "messages": [
            {"role": "user", "content": template.format(shot_word)},
            {"role": "assistant", "content": f"Answer: {shot_answer}"},
            {"role": "user", "content": template.format(word)},
            {"role": "assistant", "content": f"Answer: {answer}"},
        ]
    }


def build() -> dict[str, list[dict[str, list[dict[str, str]]]]]:
    """The two files' records: ``{"train": [...], "eval": [...]}``, each shuffled with :data:`SEED`."""
    rng = random.Random(SEED)
    splits: dict[str, list[dict[str, list[dict[str, str]]]]] = {"train": [], "eval": []}
    for relation, _kind, pairs in STRATA:
        words = sorted(pairs)
        rng.shuffle(words)
        held = round(len(words) * EVAL_SHARE)
        splits["eval"] += [record(relation, w, pairs[w]) for w in words[:held]]
        splits["train"] += [record(relation, w, pairs[w]) for w in words[held:]]
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def main() -> None:
    for split, rows in build().items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (HERE / f"{split}.jsonl").write_text(text, encoding="utf-8")
        print(f"{split}.jsonl: {len(rows)} records")


if __name__ == "__main__":
    main()
