// The native pickle reader (trainer/pickle.h): opcodes of protocols 0-5 as CPython writes them,
// numpy scalars and arrays, the reference's network pickle, and refusal of everything that is
// not on the allow-list (before any later opcode is read).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "test_data_util.h"
#include "trainer/pickle.h"

namespace fs = std::filesystem;
using namespace sf;
using pickle::Kind;

namespace {

// Written by CPython 3.11 pickle.dumps(obj, protocol=P) for
//   shared = [7, 8]
//   obj = {'a': 1, 'neg': -5, 'b2': 300, 'b4': 70000, 'big': 2**40, 'min': -2**63, 'f': 1.5,
//          's': 'h\u00e9llo \u2603', 'l': [1, 2, 3], 't': (1, 'x', None), 't1': (2,), 't2': (3, 4),
//          'empty': (), 'yes': True, 'no': False, 'n': None, 'nested': {'k': [True, False]},
//          'od': OrderedDict([('x', 1), ('y', 2)]), 'set': {5}, 'fs': frozenset([6]),
//          'sh1': shared, 'sh2': shared, 'long': [0, 1, 2]}
const char* const kBasicJson =
    R"({"a":1,"b2":300,"b4":70000,"big":1099511627776,"empty":[],"f":1.5,"fs":[6],"l":[1,2,3],)"
    R"("long":[0,1,2],"min":-9223372036854775808,"n":null,"neg":-5,"nested":{"k":[true,false]},"no":false,)"
    R"("od":{"x":1,"y":2},"s":"h\u00e9llo \u2603","set":[5],"sh1":[7,8],"sh2":[7,8],"t":[1,"x",null],"t1":[2],)"
    R"("t2":[3,4],"yes":true})";
const char* const kBasicP0 =
    "286470300a56610a70310a49310a73566e65670a70320a492d350a735662320a70330a493330300a735662340a70340a"
    "4937303030300a73566269670a70350a4c313039393531313632373737364c0a73566d696e0a70360a4c2d3932323333"
    "37323033363835343737353830384c0a7356660a70370a46312e350a7356730a70380a5668e96c6c6f205c7532363033"
    "0a70390a73566c0a7031300a286c7031310a49310a6149320a6149330a617356740a7031320a2849310a56780a703133"
    "0a4e747031340a735674310a7031350a2849320a747031360a735674320a7031370a2849330a49340a747031380a7356"
    "656d7074790a7031390a287473567965730a7032300a4930310a73566e6f0a7032310a4930300a73566e0a7032320a4e"
    "73566e65737465640a7032330a28647032340a566b0a7032350a286c7032360a4930310a614930300a617373566f640a"
    "7032370a63636f6c6c656374696f6e730a4f726465726564446963740a7032380a2874527032390a6731330a49310a73"
    "56790a7033300a49320a7373567365740a7033310a635f5f6275696c74696e5f5f0a7365740a7033320a28286c703333"
    "0a49350a61747033340a527033350a735666730a7033360a635f5f6275696c74696e5f5f0a66726f7a656e7365740a70"
    "33370a28286c7033380a49360a61747033390a527034300a73567368310a7034310a286c7034320a49370a6149380a61"
    "73567368320a7034330a6734320a73566c6f6e670a7034340a286c7034350a49300a6149310a6149320a61732e";
const char* const kBasicP2 =
    "80027d71002858010000006171014b0158030000006e656771024afbffffff5802000000623271034d2c015802000000"
    "623471044a70110100580300000062696771058a0600000000000158030000006d696e71068a08000000000000008058"
    "01000000667107473ff80000000000005801000000737108580a00000068c3a96c6c6f20e29883710958010000006c71"
    "0a5d710b284b014b024b0365580100000074710c4b01580100000078710d4e87710e58020000007431710f4b02857110"
    "5802000000743271114b034b048671125805000000656d707479711329580300000079657371148858020000006e6f71"
    "158958010000006e71164e58060000006e657374656471177d711858010000006b71195d711a28888965735802000000"
    "6f64711b63636f6c6c656374696f6e730a4f726465726564446963740a711c2952711d28680d4b01580100000079711e"
    "4b02755803000000736574711f635f5f6275696c74696e5f5f0a7365740a71205d71214b056185712252712358020000"
    "0066737124635f5f6275696c74696e5f5f0a66726f7a656e7365740a71255d71264b0661857127527128580300000073"
    "683171295d712a284b074b08655803000000736832712b682a58040000006c6f6e67712c5d712d284b004b014b026575"
    "2e";
const char* const kBasicP4 =
    "80049533010000000000007d94288c0161944b018c036e6567944afbffffff8c026232944d2c018c026234944a701101"
    "008c03626967948a060000000000018c036d696e948a0800000000000000808c016694473ff80000000000008c017394"
    "8c0a68c3a96c6c6f20e29883948c016c945d94284b014b024b03658c0174944b018c0178944e87948c027431944b0285"
    "948c027432944b034b0486948c05656d70747994298c0379657394888c026e6f94898c016e944e8c066e657374656494"
    "7d948c016b945d9428888965738c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394"
    "29529428680d4b018c0179944b02758c03736574948f94284b05908c02667394284b0691948c03736831945d94284b07"
    "4b08658c037368329468268c046c6f6e67945d94284b004b014b0265752e";
const char* const kNumpyP2 =
    "80027d71002858030000006636347101636e756d70792e636f72652e6d756c746961727261790a7363616c61720a7102"
    "636e756d70790a64747970650a71035802000000663871048988877105527106284b0358010000003c71074e4e4e4aff"
    "ffffff4affffffff4b0074710862635f636f646563730a656e636f64650a71095809000000000000000000c3803f710a"
    "58060000006c6174696e31710b86710c52710d86710e52710f5803000000663332711068026803580200000066347111"
    "8988877112527113284b0368074e4e4e4affffffff4affffffff4b007471146268095805000000000020c3807115680b"
    "8671165271178671185271195803000000693634711a6802680358020000006938711b898887711c52711d284b036807"
    "4e4e4e4affffffff4affffffff4b0074711e6268095810000000c3bdc3bfc3bfc3bfc3bfc3bfc3bfc3bf711f680b8671"
    "20527121867122527123580200000075387124680268035802000000753171258988877126527127284b035801000000"
    "7c71284e4e4e4affffffff4affffffff4b007471296268095802000000c388712a680b86712b52712c86712d52712e58"
    "03000000617272712f636e756d70792e636f72652e6d756c746961727261790a5f7265636f6e7374727563740a713063"
    "6e756d70790a6e6461727261790a71314b0085713268095801000000627133680b867134527135877136527137284b01"
    "4b024b038671386813896809581b000000000000000000c2803f00000040000040400000c280400000c2a0407139680b"
    "86713a52713b74713c6258050000006172726265713d683068314b0085713e683587713f527140284b014b0285714168"
    "035802000000663871428988877143527144284b0358010000003e71454e4e4e4affffffff4affffffff4b0074714662"
    "89680958110000003fc3b000000000000040000000000000007147680b86714852714974714a62752e";
// numpy 1.24, protocol 2: {'f64': np.float64(0.125), 'f32': np.float32(-2.5), 'i64': np.int64(-3),
// 'u8': np.uint8(200), 'arr': np.arange(6, dtype=np.float32).reshape(2, 3),
// 'arrbe': np.array([1.0, 2.0], dtype='>f8')}

std::shared_ptr<const std::string> from_hex(const char* hex) {
  auto out = std::make_shared<std::string>();
  for (const char* p = hex; p[0] && p[1]; p += 2) out->push_back(static_cast<char>(std::stoi(std::string(p, 2), nullptr, 16)));
  return out;
}

std::shared_ptr<const std::string> bytes(const std::string& s) { return std::make_shared<const std::string>(s); }

// A string literal with its embedded NUL bytes.
template <size_t N>
std::string S(const char (&lit)[N]) {
  return std::string(lit, N - 1);
}

pickle::ValuePtr load(const std::shared_ptr<const std::string>& data) {
  pickle::LoadOptions o;
  o.what = "test.pkl";
  return pickle::load(data, o);
}

std::string load_error(const std::string& data) {
  try {
    load(bytes(data));
  } catch (const pickle::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string error_of_json(const pickle::Value& v) {
  try {
    pickle::to_json(v, "test");
  } catch (const pickle::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Pickle, ReadsWhatCPythonWritesInEveryProtocol) {
  const auto expected = nlohmann::json::parse(kBasicJson);
  for (const char* hex : {kBasicP0, kBasicP2, kBasicP4}) {
    auto v = load(from_hex(hex));
    ASSERT_TRUE(v->is(Kind::Dict));
    EXPECT_EQ(pickle::to_json(*v, "basic"), expected);
    // Memo references are shared, not copied.
    EXPECT_EQ(v->get("sh1").get(), v->get("sh2").get());
    EXPECT_TRUE(v->get("set")->is(Kind::Set));
    EXPECT_TRUE(v->get("t")->is(Kind::Tuple));
  }
}

TEST(Pickle, NumpyScalarsAndArraysBecomePlainData) {
  auto v = load(from_hex(kNumpyP2));
  EXPECT_EQ(v->get("f64")->kind, Kind::Float);
  EXPECT_EQ(v->get("f64")->f, 0.125);
  EXPECT_EQ(v->get("f32")->f, -2.5);
  EXPECT_EQ(v->get("i64")->i, -3);
  EXPECT_EQ(v->get("u8")->i, 200);
  auto arr = v->get("arr");
  ASSERT_TRUE(arr->is(Kind::Array));
  EXPECT_EQ(arr->dtype, "float32");
  EXPECT_EQ(arr->shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(arr->bytes.size, 24u);
  float last;
  std::memcpy(&last, arr->bytes.data() + 20, 4);
  EXPECT_EQ(last, 5.0f);
  EXPECT_EQ(v->get("arrbe")->byteorder, '>');
}

TEST(Pickle, RefusesOsSystemBeforeAnythingRuns) {
  const fs::path marker = fs::temp_directory_path() / ("sf_pickle_pwned_" + std::to_string(::getpid()));
  fs::remove(marker);
  const std::string cmd = "touch " + marker.string();
  // Protocol 2: GLOBAL 'os system', the command, TUPLE1, REDUCE, STOP (what pickle.dumps of a
  // class whose __reduce__ returns (os.system, (cmd,)) produces).
  std::string p2 = std::string("\x80\x02") + "cos\nsystem\n" + "X" + std::string(1, static_cast<char>(cmd.size())) +
                   std::string(3, '\0') + cmd + "\x85R.";
  EXPECT_NE(load_error(p2).find("test.pkl: refusing global os.system (not on the allow-list)"), std::string::npos)
      << load_error(p2);
  // The refusal happens at the GLOBAL opcode: garbage after it is never read.
  EXPECT_NE(load_error("\x80\x02" "cposix\nsystem\n" "\xff\xff\xff").find("refusing global posix.system"),
            std::string::npos);
  // Protocol 4: STACK_GLOBAL builtins.eval, then REDUCE.
  std::string p4 = S("\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00") + "\x8c\x08" + "builtins" + "\x8c\x04" +
                   "eval" + "\x93" + "\x8c\x03" + "1+1" + "\x85R.";
  EXPECT_NE(load_error(p4).find("refusing global builtins.eval"), std::string::npos) << load_error(p4);
  // Protocol 0 INST and old module spellings; classic escape hatches.
  EXPECT_NE(load_error("(S'id'\nios\nsystem\n.").find("refusing global os.system"), std::string::npos);
  EXPECT_NE(load_error("c__builtin__\ngetattr\n.").find("refusing global builtins.getattr"), std::string::npos);
  EXPECT_NE(load_error("csubprocess\nPopen\n.").find("refusing global subprocess.Popen"), std::string::npos);
  EXPECT_NE(load_error("ccopyreg\n_reconstructor\n.").find("refusing global copyreg._reconstructor"), std::string::npos);
  EXPECT_NE(load_error("\x80\x02\x82\x01.").find("refusing extension-registry"), std::string::npos);
  // Allow-listed names that are only values cannot be called.
  EXPECT_NE(load_error("\x80\x02" "ctorch\nFloatStorage\n)R.").find("refusing to call torch.FloatStorage"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(marker));
}

TEST(Pickle, MalformedInputsFailWithErrorsNotCrashes) {
  // Every strict prefix of a valid pickle is truncated.
  auto full = from_hex(kBasicP4);
  for (size_t n = 0; n < full->size(); ++n) {
    EXPECT_THROW(load(bytes(full->substr(0, n))), pickle::Error) << "prefix " << n;
  }
  // Lengths beyond the input, bad memo keys, stack underflow, unknown opcodes.
  EXPECT_NE(load_error(std::string("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f", 11)).find("truncated"),
            std::string::npos);
  EXPECT_NE(load_error("\x80\x02h\x05.").find("memo key 5 not defined"), std::string::npos);
  EXPECT_NE(load_error("\x80\x02\x85.").find("stack underflow"), std::string::npos);
  EXPECT_NE(load_error("\x80\x02\xfe.").find("unknown pickle opcode 0xfe"), std::string::npos);
  EXPECT_NE(load_error("\x80\x02Q.").find("stack underflow"), std::string::npos);
  EXPECT_NE(load_error("\x80\x02N\x85Q.").find("persistent id outside a torch storage blob"), std::string::npos);
  // A list that contains itself is refused (it would be a shared_ptr cycle, never freed).
  EXPECT_NE(load_error(S("\x80\x02]q\x00h\x00\x61.")).find("contains itself"), std::string::npos);
  // Shared references that expand to 2^60 values: parsing is cheap, conversion stops at a budget.
  std::string laughs = S("\x80\x02]q\x00");
  for (int k = 1; k <= 60; ++k) {
    laughs += 'h';
    laughs += static_cast<char>(k - 1);
    laughs += 'h';
    laughs += static_cast<char>(k - 1);
    laughs += "\x86q";
    laughs += static_cast<char>(k);
  }
  laughs += ".";
  auto huge = load(bytes(laughs));
  EXPECT_NE(error_of_json(*huge).find("too large"), std::string::npos);
  // Random corruptions of a real pickle: either a value or a pickle::Error, never anything else.
  std::mt19937 rng(1);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string mutated = *full;
    for (int k = 0; k < 3; ++k) mutated[rng() % mutated.size()] = static_cast<char>(rng());
    try {
      auto v = load(bytes(mutated));
      try {
        pickle::to_json(*v, "fuzz");
      } catch (const pickle::Error&) {
      }
    } catch (const pickle::Error&) {
    }
  }
}

TEST(Pickle, ReferenceNetworkPickleAsPlainData) {
  auto root = pickle::load_file(test::fixture("snapshot_res32.pkl"));
  ASSERT_TRUE(root->is(Kind::Dict));
  EXPECT_EQ(pickle::to_json(*root->get("training_set_kwargs"), "t").at("resolution"), 32);
  for (const char* name : {"G", "G_ema"}) {
    auto g = root->get(name);
    ASSERT_TRUE(g && g->is(Kind::Object)) << name;
    EXPECT_EQ(g->s, "Generator");
    auto kw = pickle::to_json(*g->state->get("_init_kwargs"), "kw");
    EXPECT_EQ(kw.at("mapping_kwargs").at("num_layers"), 2);
    EXPECT_EQ(kw.at("synthesis_kwargs").at("channel_base"), 2048);
    auto sd = pickle::module_state_dict(*g, name);
    EXPECT_EQ(sd.size(), 75u);
    EXPECT_EQ(sd.front().first, "synthesis.b4.const");
    const pickle::Value& t = *sd.front().second;
    ASSERT_TRUE(t.is(Kind::Tensor));
    EXPECT_EQ(t.dtype, "float32");
    EXPECT_EQ(t.shape, (std::vector<int64_t>{64, 4, 4}));
    EXPECT_EQ(t.storage->bytes.size, 64u * 16 * 4);
  }
  auto d = root->get("D");
  EXPECT_EQ(d->s, "Discriminator");
  EXPECT_EQ(pickle::module_state_dict(*d, "D").size(), 37u);
  // numpy scalars inside module attributes (FullyConnectedLayer.weight_gain = lr / np.sqrt(in)).
  auto fc0 = d->state->get("_modules")->get("b4")->state->get("_modules")->get("fc");
  EXPECT_EQ(fc0->state->get("weight_gain")->kind, Kind::Float);
  auto aug = pickle::module_state_dict(*root->get("augment_pipe"), "augment_pipe");
  EXPECT_EQ(aug.front().first, "p");
}
