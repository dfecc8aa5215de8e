# သတင်းလွှာ၊ အသိပေးချက်နှင့် WeChat ဆောင်းပါးတို့၏ စာတန်းများ - မြန်မာဘာသာ

## Record sections
organizers = စီစဉ်ကျင်းပသူများ
sponsors = အဓိကထောက်ပံ့သူ
supporters = ပံ့ပိုးကူညီသူ
co-organizers = ပူးတွဲကျင်းပသူ
attendees = တက်ရောက်သူများ
topics = ခေါင်းစဉ်များ
highlights = ကျွမ်းကျင်သူများ၏ အမြင် အဓိကအချက်များ
image = ပုံ

## Session formats
format-online = အွန်လိုင်း
format-in-person = လူကိုယ်တိုင် တက်ရောက်
format-hybrid = ပေါင်းစပ် (လူကိုယ်တိုင်နှင့် အွန်လိုင်း)

## Digest subject
digest-subject = { $publisher }: အစည်းအဝေး အစီရင်ခံစာ { $count } စောင်

## Contact block
contact = ဆက်သွယ်ရန်
address = လိပ်စာ
tel = ဖုန်း
fax = ဖက်စ်
email = အီးမေးလ်
web = ဝက်ဘ်ဆိုက်
wechat = WeChat ID

## Footer
why = ကျွန်ုပ်တို့၏ စာပို့စာရင်းတွင် ပါဝင်သောကြောင့် ဤသတင်းလွှာကို လက်ခံရရှိခြင်း ဖြစ်ပါသည်။
unsubscribe = စာရင်းမှ ထွက်ရန်

## Notices
notice = အသိပေးချက်
urgent = အရေးပေါ်

## The web version and the public archive
view-in-browser = ဘရောက်ဇာတွင် ကြည့်ရန်
archive = သတင်းလွှာ မော်ကွန်း
archive-languages = ဘာသာစကားများ
archive-all = ဘာသာစကား အားလုံး
archive-older = ယခင် သတင်းလွှာများ
archive-newest = နောက်ဆုံး သတင်းလွှာများ
archive-feed = Atom ဖိဒ်
archive-empty = ဤနေရာတွင် မည်သည့်အရာမျှ မထုတ်ဝေရသေးပါ။
